#![no_main]
//! Fuzz target `patches`: the body is `xunjian_tests::fuzz_bodies::patches`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| xunjian_tests::fuzz_bodies::patches(data));

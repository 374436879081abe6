#![no_main]
//! Fuzz target `hardware`: the body is `xunjian_tests::fuzz_bodies::hardware`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| xunjian_tests::fuzz_bodies::hardware(data));

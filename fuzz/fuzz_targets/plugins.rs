#![no_main]
//! Fuzz target `plugins`: the body is `xunjian_tests::fuzz_bodies::plugins`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| xunjian_tests::fuzz_bodies::plugins(data));

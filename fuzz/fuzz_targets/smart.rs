#![no_main]
//! Fuzz target `smart`: the body is `xunjian_tests::fuzz_bodies::smart`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| xunjian_tests::fuzz_bodies::smart(data));

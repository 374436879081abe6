#![no_main]
//! Fuzz target `services`: the body is `xunjian_tests::fuzz_bodies::services`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| xunjian_tests::fuzz_bodies::services(data));

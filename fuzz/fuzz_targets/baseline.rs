#![no_main]
//! Fuzz target `baseline`: the body is `xunjian_tests::fuzz_bodies::baseline`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| xunjian_tests::fuzz_bodies::baseline(data));

#![no_main]
//! Fuzz target `mdstat`: the body is `xunjian_tests::fuzz_bodies::mdstat`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| xunjian_tests::fuzz_bodies::mdstat(data));

#![no_main]
//! Fuzz target `collector_config`: the body is `xunjian_tests::fuzz_bodies::collector_config`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| xunjian_tests::fuzz_bodies::collector_config(data));

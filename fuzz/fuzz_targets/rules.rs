#![no_main]
//! Fuzz target `rules`: the body is `xunjian_tests::fuzz_bodies::rules`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| xunjian_tests::fuzz_bodies::rules(data));

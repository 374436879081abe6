#![no_main]
//! Fuzz target `packages`: the body is `xunjian_tests::fuzz_bodies::packages`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| xunjian_tests::fuzz_bodies::packages(data));

#![no_main]
//! Fuzz target `antivirus`: the body is `xunjian_tests::fuzz_bodies::antivirus`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| xunjian_tests::fuzz_bodies::antivirus(data));

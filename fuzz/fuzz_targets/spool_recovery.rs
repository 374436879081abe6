#![no_main]
//! Fuzz target `spool_recovery`: the body is `xunjian_tests::fuzz_bodies::spool_recovery`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| xunjian_tests::fuzz_bodies::spool_recovery(data));

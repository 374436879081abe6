#![no_main]
//! Fuzz target `enrollment_csr`: the body is `xunjian_tests::fuzz_bodies::enrollment_csr`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| xunjian_tests::fuzz_bodies::enrollment_csr(data));

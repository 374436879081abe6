#![no_main]
//! Fuzz target `evidence_bundle`: the body is `xunjian_tests::fuzz_bodies::evidence_bundle`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| xunjian_tests::fuzz_bodies::evidence_bundle(data));

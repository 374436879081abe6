#![no_main]
//! Fuzz target `agent_config`: the body is `xunjian_tests::fuzz_bodies::agent_config`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| xunjian_tests::fuzz_bodies::agent_config(data));

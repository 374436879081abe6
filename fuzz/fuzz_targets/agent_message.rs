#![no_main]
//! Fuzz target `agent_message`: the body is `xunjian_tests::fuzz_bodies::agent_message`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| xunjian_tests::fuzz_bodies::agent_message(data));

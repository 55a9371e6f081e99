#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| peering_fuzz::gateway::check(data));

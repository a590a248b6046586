#![no_main]
// See transformer/src/fuzz.rs for what this target checks.
libfuzzer_sys::fuzz_target!(|data: &[u8]| transformer::fuzz::sigma(data));

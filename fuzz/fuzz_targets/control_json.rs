#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| blindfold::forwarder::control::fuzz_json(data));

#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| blindfold::forwarder::packet::fuzz_classify(data));

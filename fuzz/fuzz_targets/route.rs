#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| blindfold::forwarder::route::fuzz_route(data));

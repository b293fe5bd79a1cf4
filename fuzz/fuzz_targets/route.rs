#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| blindfold::proto::route::fuzz_route(data));

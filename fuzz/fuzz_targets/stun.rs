#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| blindfold::proto::stun::fuzz_stun(data));

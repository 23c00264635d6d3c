#![no_main]

libfuzzer_sys::fuzz_target!(
    |data: &[u8]| terraform_provider_fleet::tfplugin::value::fuzz_decode(data)
);

//! Fuzzes the certificate, revocation list and key decoders: binary
//! certificates and lists, and every PEM reader on the input as (lossy)
//! UTF-8 text. Decoders are total; a certificate or list that decodes keeps
//! its exact bytes and can be verified without panicking.

#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_core::{CaCertificate, CaSecret, Certificate, PublicKey, RevocationList, SecretKey};
use weft_fuzz::{Fixture, UNIX_START};

fuzz_target!(|data: &[u8]| {
    let fixture = Fixture::get();
    if let Ok(cert) = Certificate::from_bytes(data) {
        assert_eq!(cert.to_bytes(), data, "certificate changed its bytes");
        let _ = cert.verify(fixture.ca_certificate(), UNIX_START);
        let _ = cert.node_id().overlay_ipv6();
        let again = Certificate::from_pem(&cert.to_pem());
        assert_eq!(
            again.as_ref(),
            Ok(&cert),
            "certificate PEM does not round-trip"
        );
    }
    if let Ok(ca) = CaCertificate::from_bytes(data) {
        assert_eq!(ca.to_bytes(), data, "CA certificate changed its bytes");
        let _ = ca.fingerprint();
        let again = CaCertificate::from_pem(&ca.to_pem());
        assert_eq!(
            again.as_ref(),
            Ok(&ca),
            "CA certificate PEM does not round-trip"
        );
    }
    if let Ok(list) = RevocationList::from_bytes(data) {
        assert_eq!(list.to_bytes(), data, "revocation list changed its bytes");
        let _ = list.verify(fixture.ca_certificate());
        let again = RevocationList::from_pem(&list.to_pem());
        assert_eq!(
            again.as_ref(),
            Ok(&list),
            "revocation list PEM does not round-trip"
        );
    }
    let text = String::from_utf8_lossy(data);
    let _ = RevocationList::from_pem(&text);
    let _ = Certificate::from_pem(&text);
    let _ = CaCertificate::from_pem(&text);
    let _ = PublicKey::from_pem(&text);
    let _ = SecretKey::from_pem(&text);
    let _ = CaSecret::from_pem(&text);
});

//! `host.verify-signature`: public-key signature checks in native code (ring),
//! for plugins such as jwt-auth, where the same math inside Wasm costs several
//! times more.

use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey, VerificationAlgorithm};

use super::bindings::host::{PublicKey, SignatureAlgorithm};

/// Whether `sig` is a valid signature of `message` under `key` and `alg`.
/// Any mismatch (wrong signature, malformed key, key of another family) is
/// simply `false`: the guest only needs a yes or no.
pub fn verify(alg: SignatureAlgorithm, key: &PublicKey, message: &[u8], sig: &[u8]) -> bool {
    use SignatureAlgorithm::*;
    match (alg, key) {
        (Es256, PublicKey::EcPoint(p)) => {
            unparsed(&signature::ECDSA_P256_SHA256_FIXED, p, message, sig)
        }
        (Es384, PublicKey::EcPoint(p)) => {
            unparsed(&signature::ECDSA_P384_SHA384_FIXED, p, message, sig)
        }
        (EdDsa, PublicKey::Ed25519(k)) => unparsed(&signature::ED25519, k, message, sig),
        (_, PublicKey::RsaDer(der)) => {
            rsa_params(alg).is_some_and(|p| unparsed(p, der, message, sig))
        }
        (_, PublicKey::RsaComponents((n, e))) => rsa_params(alg).is_some_and(|p| {
            RsaPublicKeyComponents { n, e }
                .verify(p, message, sig)
                .is_ok()
        }),
        _ => false,
    }
}

fn unparsed(
    algorithm: &'static dyn VerificationAlgorithm,
    key: &[u8],
    message: &[u8],
    sig: &[u8],
) -> bool {
    UnparsedPublicKey::new(algorithm, key)
        .verify(message, sig)
        .is_ok()
}

fn rsa_params(alg: SignatureAlgorithm) -> Option<&'static signature::RsaParameters> {
    use SignatureAlgorithm::*;
    Some(match alg {
        Rs256 => &signature::RSA_PKCS1_2048_8192_SHA256,
        Rs384 => &signature::RSA_PKCS1_2048_8192_SHA384,
        Rs512 => &signature::RSA_PKCS1_2048_8192_SHA512,
        Ps256 => &signature::RSA_PSS_2048_8192_SHA256,
        Ps384 => &signature::RSA_PSS_2048_8192_SHA384,
        Ps512 => &signature::RSA_PSS_2048_8192_SHA512,
        Es256 | Es384 | EdDsa => return None,
    })
}

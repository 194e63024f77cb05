//! jsonwebtoken's crypto provider for this plugin: HMAC runs here in Wasm
//! (fast enough, and the secret never leaves the instance); public-key
//! signatures go to the host's native `verify-signature`, which is an order of
//! magnitude faster than the same math compiled to Wasm.

use gatehouse_plugin_sdk::host::{PublicKey, SignatureAlgorithm, verify_signature};
use hmac::{Hmac, Mac};
use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{ErrorKind, Result};
use jsonwebtoken::signature::{Error as SignatureError, Verifier};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, DecodingKeyKind, EncodingKey};
use sha2::{Sha256, Sha384, Sha512};

/// Installed once per instance, before the first token.
pub static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: no_signing,
    verifier_factory: verifier,
    key_utils: KeyUtils::new_unimplemented(),
};

fn no_signing(_: &Algorithm, _: &EncodingKey) -> Result<Box<dyn JwtSigner>> {
    Err(ErrorKind::Signing("jwt-auth only verifies".into()).into())
}

fn verifier(alg: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>> {
    if alg.family() != key.family() {
        return Err(ErrorKind::InvalidAlgorithm.into());
    }
    Ok(match key.family() {
        AlgorithmFamily::Hmac => Box::new(HmacVerifier {
            alg: *alg,
            secret: key.try_get_as_bytes()?.to_vec(),
        }),
        family => Box::new(HostVerifier {
            alg: *alg,
            host_alg: host_algorithm(*alg).ok_or(ErrorKind::InvalidAlgorithm)?,
            key: public_key(family, key.kind()),
        }),
    })
}

fn host_algorithm(alg: Algorithm) -> Option<SignatureAlgorithm> {
    use SignatureAlgorithm as S;
    Some(match alg {
        Algorithm::RS256 => S::Rs256,
        Algorithm::RS384 => S::Rs384,
        Algorithm::RS512 => S::Rs512,
        Algorithm::PS256 => S::Ps256,
        Algorithm::PS384 => S::Ps384,
        Algorithm::PS512 => S::Ps512,
        Algorithm::ES256 => S::Es256,
        Algorithm::ES384 => S::Es384,
        Algorithm::EdDSA => S::EdDsa,
        _ => return None,
    })
}

/// jsonwebtoken holds RSA keys as PKCS#1 DER or (n, e), EC keys as the SEC1
/// point and Ed25519 keys raw: exactly what the host import takes.
fn public_key(family: AlgorithmFamily, kind: &DecodingKeyKind) -> PublicKey {
    match (family, kind) {
        (_, DecodingKeyKind::RsaModulusExponent { n, e }) => {
            PublicKey::RsaComponents((n.clone(), e.clone()))
        }
        (AlgorithmFamily::Rsa, DecodingKeyKind::SecretOrDer(der)) => PublicKey::RsaDer(der.clone()),
        (AlgorithmFamily::Ed, DecodingKeyKind::SecretOrDer(raw)) => PublicKey::Ed25519(raw.clone()),
        (_, DecodingKeyKind::SecretOrDer(point)) => PublicKey::EcPoint(point.clone()),
    }
}

struct HostVerifier {
    alg: Algorithm,
    host_alg: SignatureAlgorithm,
    key: PublicKey,
}

impl Verifier<Vec<u8>> for HostVerifier {
    fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> std::result::Result<(), SignatureError> {
        if verify_signature(self.host_alg, &self.key, msg, signature) {
            Ok(())
        } else {
            Err(SignatureError::new())
        }
    }
}

impl JwtVerifier for HostVerifier {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

struct HmacVerifier {
    alg: Algorithm,
    secret: Vec<u8>,
}

impl HmacVerifier {
    /// Constant-time comparison (`verify_slice`).
    fn check<M: Mac + hmac::digest::KeyInit>(&self, msg: &[u8], sig: &[u8]) -> bool {
        let Ok(mut mac) = <M as Mac>::new_from_slice(&self.secret) else {
            return false;
        };
        mac.update(msg);
        mac.verify_slice(sig).is_ok()
    }
}

impl Verifier<Vec<u8>> for HmacVerifier {
    fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> std::result::Result<(), SignatureError> {
        let ok = match self.alg {
            Algorithm::HS256 => self.check::<Hmac<Sha256>>(msg, signature),
            Algorithm::HS384 => self.check::<Hmac<Sha384>>(msg, signature),
            Algorithm::HS512 => self.check::<Hmac<Sha512>>(msg, signature),
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Err(SignatureError::new())
        }
    }
}

impl JwtVerifier for HmacVerifier {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

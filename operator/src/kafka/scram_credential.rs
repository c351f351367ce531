//! The SCRAM credential a client hands Kafka to create or change a user
//! (`AlterUserScramCredentials`): a salt, an iteration count and the salted password, never the
//! password itself. `SaltedPassword := Hi(password, salt, i)` (RFC 5802 §2.2) is PBKDF2 with the
//! mechanism's HMAC and one output block, exactly what Kafka's `ScramFormatter.saltedPassword`
//! computes (the password as UTF-8, no SASLprep). Pure apart from drawing the random salt.

use std::fmt;
use std::num::NonZeroU32;

use ring::pbkdf2;
use ring::rand::{SecureRandom, SystemRandom};

use super::security::Mechanism;

/// Fewest iterations Kafka accepts for a credential (`ScramMechanism.minIterations`).
pub const MIN_ITERATIONS: i32 = 4096;
/// Most iterations Kafka accepts for a credential (`ScramMechanism.maxIterations`).
pub const MAX_ITERATIONS: i32 = 16384;
/// Bytes of random salt per credential (Kafka's own `ScramFormatter` uses 32 too).
pub const SALT_LEN: usize = 32;

/// A SCRAM mechanism Kafka stores credentials for; a user has one credential per mechanism.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ScramMechanism {
    /// `SCRAM-SHA-256`.
    Sha256,
    /// `SCRAM-SHA-512`.
    Sha512,
}

impl ScramMechanism {
    /// Both mechanisms.
    pub const ALL: [ScramMechanism; 2] = [ScramMechanism::Sha256, ScramMechanism::Sha512];

    /// Kafka's name for it (`sasl.mechanism`).
    pub fn name(self) -> &'static str {
        match self {
            ScramMechanism::Sha256 => "SCRAM-SHA-256",
            ScramMechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    /// Kafka's code on the wire (`org.apache.kafka.clients.admin.ScramMechanism.type()`).
    pub fn code(self) -> i8 {
        match self {
            ScramMechanism::Sha256 => 1,
            ScramMechanism::Sha512 => 2,
        }
    }

    /// The mechanism of a wire code; `None` for 0 (`UNKNOWN`) and codes this client does not know.
    pub fn from_code(code: i8) -> Option<ScramMechanism> {
        ScramMechanism::ALL.into_iter().find(|m| m.code() == code)
    }

    /// Length of the salted password: one output block of the hash.
    pub fn salted_password_len(self) -> usize {
        match self {
            ScramMechanism::Sha256 => 32,
            ScramMechanism::Sha512 => 64,
        }
    }

    fn pbkdf2(self) -> pbkdf2::Algorithm {
        match self {
            ScramMechanism::Sha256 => pbkdf2::PBKDF2_HMAC_SHA256,
            ScramMechanism::Sha512 => pbkdf2::PBKDF2_HMAC_SHA512,
        }
    }
}

impl fmt::Display for ScramMechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl From<ScramMechanism> for Mechanism {
    fn from(mechanism: ScramMechanism) -> Mechanism {
        match mechanism {
            ScramMechanism::Sha256 => Mechanism::ScramSha256,
            ScramMechanism::Sha512 => Mechanism::ScramSha512,
        }
    }
}

/// Why a credential cannot be made.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum ScramCredentialError {
    /// Kafka would refuse the count (`UNACCEPTABLE_CREDENTIAL`); checked before hashing, so a
    /// huge count does not spin the CPU first.
    #[error(
        "{iterations} SCRAM iterations is outside what Kafka accepts ({MIN_ITERATIONS} to {MAX_ITERATIONS})"
    )]
    Iterations {
        /// The count asked for.
        iterations: i32,
    },
    /// The system's random source failed.
    #[error("no randomness for the SCRAM salt")]
    NoRandomness,
}

/// What Kafka stores for one user and mechanism. `Debug` does not show the salted password: it
/// is enough to log in as the user.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramCredential {
    pub mechanism: ScramMechanism,
    pub iterations: i32,
    pub salt: Vec<u8>,
    /// `Hi(password, salt, iterations)`.
    pub salted_password: Vec<u8>,
}

impl fmt::Debug for ScramCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramCredential")
            .field("mechanism", &self.mechanism)
            .field("iterations", &self.iterations)
            .field("salt_len", &self.salt.len())
            .finish_non_exhaustive()
    }
}

impl ScramCredential {
    /// A credential for `password` with a fresh random salt of [`SALT_LEN`] bytes.
    pub fn generate(
        mechanism: ScramMechanism,
        password: &str,
        iterations: i32,
    ) -> Result<ScramCredential, ScramCredentialError> {
        let mut salt = vec![0u8; SALT_LEN];
        SystemRandom::new()
            .fill(&mut salt)
            .map_err(|_| ScramCredentialError::NoRandomness)?;
        ScramCredential::with_salt(mechanism, password, salt, iterations)
    }

    /// A credential for `password` with the given salt.
    pub fn with_salt(
        mechanism: ScramMechanism,
        password: &str,
        salt: Vec<u8>,
        iterations: i32,
    ) -> Result<ScramCredential, ScramCredentialError> {
        let rounds = u32::try_from(iterations)
            .ok()
            .filter(|_| (MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations))
            .and_then(NonZeroU32::new)
            .ok_or(ScramCredentialError::Iterations { iterations })?;
        Ok(ScramCredential {
            mechanism,
            iterations,
            salted_password: salted_password(mechanism, password, &salt, rounds),
            salt,
        })
    }
}

/// `SaltedPassword := Hi(Normalize(password), salt, i)` (RFC 5802 §3): PBKDF2 with the
/// mechanism's HMAC, one block long. Any iteration count, for test vectors; Kafka's limits are
/// checked by [`ScramCredential`].
pub fn salted_password(
    mechanism: ScramMechanism,
    password: &str,
    salt: &[u8],
    iterations: NonZeroU32,
) -> Vec<u8> {
    let mut out = vec![0u8; mechanism.salted_password_len()];
    pbkdf2::derive(
        mechanism.pbkdf2(),
        iterations,
        salt,
        password.as_bytes(),
        &mut out,
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD as BASE64;
    use ring::{digest, hmac};

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn rounds(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
    }

    #[test]
    fn sha_256_salted_password_is_the_first_block_of_the_rfc_7914_pbkdf2_vector() {
        // RFC 7914 §11: PBKDF2-HMAC-SHA256(P="passwd", S="salt", c=1, dkLen=64); one block is
        // the first 32 bytes.
        let salted = salted_password(ScramMechanism::Sha256, "passwd", b"salt", rounds(1));
        assert_eq!(
            hex(&salted),
            "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc"
        );
    }

    #[test]
    fn sha_512_salted_password_matches_the_published_pbkdf2_vector() {
        // PBKDF2-HMAC-SHA512(P="password", S="salt", c=1, dkLen=64), the vector published beside
        // RFC 6070's SHA-1 ones (and what OpenSSL and Python's hashlib compute).
        let salted = salted_password(ScramMechanism::Sha512, "password", b"salt", rounds(1));
        assert_eq!(
            hex(&salted),
            "867f70cf1ade02cff3752599a3a53dc4af34c7a669815ae5d513554e1c8cf252\
             c02d470a285a0501bad999bfe943c08f050235d7d68b1da55e63f73b60a57fce"
        );
    }

    #[test]
    fn a_credential_from_the_rfc_7677_salt_proves_the_rfc_s_server_signature() {
        // RFC 7677 §3: user "user", password "pencil", salt and 4096 iterations from the
        // server-first message. The salted password is right iff the ServerSignature computed
        // from it is the one in the RFC's server-final message.
        let salt = BASE64
            .decode("W22ZaJ0SNY7soEsUEjb6gQ==")
            .unwrap_or_default();
        let credential = ScramCredential::with_salt(ScramMechanism::Sha256, "pencil", salt, 4096);
        let credential = credential.unwrap_or_else(|e| panic!("{e}"));
        let salted = hmac::Key::new(hmac::HMAC_SHA256, &credential.salted_password);
        let auth_message = "n=user,r=rOprNGfwEbeRWgbNEkqO,\
             r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,\
             c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let server_key = hmac::sign(&salted, b"Server Key");
        let server_signature = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, server_key.as_ref()),
            auth_message.as_bytes(),
        );
        assert_eq!(
            BASE64.encode(server_signature.as_ref()),
            "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
        // And the client's proof: ClientKey XOR HMAC(StoredKey, AuthMessage).
        let client_key = hmac::sign(&salted, b"Client Key");
        let stored_key = digest::digest(&digest::SHA256, client_key.as_ref());
        let signature = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, stored_key.as_ref()),
            auth_message.as_bytes(),
        );
        let proof: Vec<u8> = client_key
            .as_ref()
            .iter()
            .zip(signature.as_ref())
            .map(|(k, s)| k ^ s)
            .collect();
        assert_eq!(
            BASE64.encode(proof),
            "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
    }

    #[test]
    fn generated_credentials_have_a_fresh_salt_of_32_bytes_and_a_block_long_salted_password() {
        for mechanism in ScramMechanism::ALL {
            let a = ScramCredential::generate(mechanism, "secret", MIN_ITERATIONS);
            let b = ScramCredential::generate(mechanism, "secret", MIN_ITERATIONS);
            let (a, b) = (
                a.unwrap_or_else(|e| panic!("{e}")),
                b.unwrap_or_else(|e| panic!("{e}")),
            );
            assert_eq!(a.salt.len(), SALT_LEN);
            assert_ne!(a.salt, b.salt, "each credential gets its own salt");
            assert_eq!(
                a.salted_password.len(),
                mechanism.salted_password_len(),
                "{mechanism}"
            );
            assert_eq!(
                a.salted_password,
                salted_password(mechanism, "secret", &a.salt, rounds(4096))
            );
        }
    }

    #[test]
    fn iteration_counts_kafka_would_refuse_are_refused_before_hashing() {
        for iterations in [i32::MIN, -1, 0, 1, MIN_ITERATIONS - 1, MAX_ITERATIONS + 1] {
            assert_eq!(
                ScramCredential::with_salt(ScramMechanism::Sha512, "p", vec![1], iterations),
                Err(ScramCredentialError::Iterations { iterations })
            );
        }
        for iterations in [MIN_ITERATIONS, MAX_ITERATIONS] {
            assert!(
                ScramCredential::with_salt(ScramMechanism::Sha256, "p", vec![1], iterations)
                    .is_ok()
            );
        }
    }

    #[test]
    fn mechanisms_use_kafka_s_names_and_wire_codes() {
        assert_eq!(
            ScramMechanism::ALL.map(|m| (m.name(), m.code())),
            [("SCRAM-SHA-256", 1), ("SCRAM-SHA-512", 2)]
        );
        for m in ScramMechanism::ALL {
            assert_eq!(ScramMechanism::from_code(m.code()), Some(m));
            assert_eq!(Mechanism::from(m).name(), m.name());
        }
        assert_eq!(ScramMechanism::from_code(0), None);
    }

    #[test]
    fn debug_does_not_show_the_salted_password() {
        let credential = ScramCredential::with_salt(ScramMechanism::Sha256, "p", vec![7; 4], 4096)
            .unwrap_or_else(|e| panic!("{e}"));
        let shown = format!("{credential:?}");
        assert!(!shown.contains("salted_password"), "{shown}");
        assert!(shown.contains("iterations: 4096"), "{shown}");
    }
}

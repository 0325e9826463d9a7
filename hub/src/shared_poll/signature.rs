//! Track signatures: the application backend's permission for one user to track a batch of
//! keys in one channel, until a time (docs/shared-poll.md §Signatures; Centrifugo's format).
//!
//! A signature is `"<iat>:<exp>:<hmac hex>"` (`exp` 0 = never expires), where the HMAC-SHA256
//! with `shared_poll.hmac_secret_key` covers `iat \0 exp \0 user \0 channel \0 hex(sha256(keys
//! joined by \0))`. NUL separators keep a `:` in a user or channel name from shifting fields.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// The times a well-formed signature carries (unix seconds; `expires_at` 0 = never).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignatureTimes {
    pub issued_at: i64,
    pub expires_at: i64,
}

/// Splits `"<iat>:<exp>:<hex>"`; `None` when it is not of that shape.
fn split(signature: &str) -> Option<(SignatureTimes, &str, &str, &str)> {
    let (iat, rest) = signature.split_once(':')?;
    let (exp, mac) = rest.split_once(':')?;
    let times = SignatureTimes {
        issued_at: iat.parse().ok()?,
        expires_at: exp.parse().ok()?,
    };
    Some((times, iat, exp, mac))
}

/// The times of a signature, without checking it (to pick the key during rotation).
pub fn times(signature: &str) -> Option<SignatureTimes> {
    split(signature).map(|(times, ..)| times)
}

fn mac_of(
    secret: &str,
    iat: &str,
    exp: &str,
    user: &str,
    channel: &str,
    keys: &[&str],
) -> HmacSha256 {
    let keys_hash = Sha256::digest(keys.join("\0").as_bytes());
    // HMAC takes keys of any length: `new_from_slice` cannot fail for it.
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC accepts any key");
    for part in [
        iat.as_bytes(),
        exp.as_bytes(),
        user.as_bytes(),
        channel.as_bytes(),
    ] {
        mac.update(part);
        mac.update(b"\0");
    }
    mac.update(hex(&keys_hash).as_bytes());
    mac
}

/// Signs `keys` for `user` in `channel` (what the application backend does; used by tests,
/// benches and examples).
pub fn sign(
    secret: &str,
    channel: &str,
    user: &str,
    keys: &[&str],
    issued_at: i64,
    expires_at: i64,
) -> String {
    let (iat, exp) = (issued_at.to_string(), expires_at.to_string());
    let mac = mac_of(secret, &iat, &exp, user, channel, keys);
    format!("{iat}:{exp}:{}", hex(&mac.finalize().into_bytes()))
}

/// The signature's times when it was made with `secret` for exactly these `keys`, `user` and
/// `channel`; `None` otherwise (compared in constant time).
pub fn verify(
    secret: &str,
    channel: &str,
    user: &str,
    keys: &[&str],
    signature: &str,
) -> Option<SignatureTimes> {
    let (times, iat, exp, given) = split(signature)?;
    let given = unhex(given)?;
    mac_of(secret, iat, exp, user, channel, keys)
        .verify_slice(&given)
        .ok()?;
    Some(times)
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(DIGITS[usize::from(byte >> 4)] as char);
        out.push(DIGITS[usize::from(byte & 0xf)] as char);
    }
    out
}

/// Lower-case hex only, as signatures are made (Centrifugo compares the text).
fn unhex(text: &str) -> Option<Vec<u8>> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes
        .chunks(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

//! The rules names and passwords must follow, and generated secrets that
//! follow them. Pure: no store, no bcrypt.

use super::AccountError;

/// The password rule: 8 to 20 characters, at least one letter and one digit.
/// The message states every check `check_password_rule` makes.
pub const PASSWORD_RULE: &str =
    "a password has 8 to 20 characters (at most 72 bytes in UTF-8), with at least one letter (of any script) and at least one digit 0-9, and no control characters";

pub fn check_password_rule(p: &str) -> Result<(), AccountError> {
    let n = p.chars().count();
    let ok = (8..=20).contains(&n)
        && p.len() <= 72
        && p.chars().any(|c| c.is_alphabetic())
        && p.chars().any(|c| c.is_ascii_digit())
        && !p.chars().any(|c| c.is_control());
    if ok {
        Ok(())
    } else {
        Err(AccountError::Invalid(format!(
            "password refused: {PASSWORD_RULE}"
        )))
    }
}

/// Project names: lower-case letters and digits in groups joined by single hyphens, 2 to 63 characters.
pub fn check_project_name(n: &str) -> Result<(), AccountError> {
    let ok = (2..=63).contains(&n.len())
        && n.split('-').all(|g| {
            !g.is_empty()
                && g.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        });
    if ok {
        Ok(())
    } else {
        Err(AccountError::Invalid(format!(
            "invalid project name {n:?}: use 2 to 63 lower-case letters and digits, in groups joined by single hyphens (e.g. my-team-2)"
        )))
    }
}

pub fn check_user_name(n: &str) -> Result<(), AccountError> {
    let ok = (1..=64).contains(&n.len())
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        && n.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(AccountError::Invalid(format!(
            "invalid account name {n:?}: use 1 to 64 lower-case letters, digits, '.', '_' or '-', starting with a letter or digit"
        )))
    }
}

/// A random secret of `len` characters that satisfies the password rule.
pub(super) fn random_secret(len: usize) -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz23456789";
    let mut rng = rand::rngs::OsRng;
    let mut s: String = (0..len)
        .map(|_| CHARS[rng.gen_range(0..CHARS.len())] as char)
        .collect();
    // Always satisfy the password rule.
    s.replace_range(0..2, &format!("a{}", rng.gen_range(2..10)));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_rule_edges() {
        for ok in ["abcdefg1", "a1234567890123456789", "pässwört1", "ÄÖÜäöüß1"] {
            assert!(check_password_rule(ok).is_ok(), "{ok}");
        }
        for bad in [
            "abcdef1",               // 7
            "a12345678901234567890", // 21
            "abcdefgh",              // letters only
            "12345678",              // digits only
            "",
            "abc\u{0}defg1",
            "😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀😀1", // 20 chars, 77 bytes
        ] {
            assert!(check_password_rule(bad).is_err(), "{bad:?}");
        }
        let msg = check_password_rule("short")
            .expect_err("refused")
            .to_string();
        assert!(msg.contains("8 to 20 characters"), "{msg}");
        for _ in 0..20 {
            assert!(check_password_rule(&random_secret(16)).is_ok());
        }
    }

    #[test]
    fn project_names() {
        for ok in ["ab", "my-team-2", "a1", &"a".repeat(63)] {
            assert!(check_project_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "a",
            "-ab",
            "ab-",
            "a--b",
            "A1",
            "a_b",
            "a.b",
            &"a".repeat(64),
        ] {
            assert!(check_project_name(bad).is_err(), "{bad}");
        }
    }
}

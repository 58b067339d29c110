//! Server messages in the words of the command line.
//!
//! Owns: rewriting the field names of a JSON body the CLI built (`edge_url`,
//! `labels.zone`) into the flags the person typed (`--edge-url`, `--label zone`),
//! so an error points at something on their command line.

/// Rewrites each `(field, flag)` in `message` where the field stands as a word
/// of its own (not part of a longer name). A field ending in `.` is a prefix:
/// `("labels.", "--label ")` turns `labels.zone:` into `--label zone:`.
pub fn name_flags(message: &str, fields: &[(&str, &str)]) -> String {
    let mut out = message.to_string();
    for (field, flag) in fields {
        out = replace_word(&out, field, flag);
    }
    out
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn replace_word(text: &str, field: &str, flag: &str) -> String {
    let prefix = field.ends_with('.');
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(field) {
        let before = rest[..i].chars().next_back();
        let after = rest[i + field.len()..].chars().next();
        let starts_word = before.is_none_or(|c| !is_name_char(c) && c != '.' && c != '-');
        let ends_word = prefix || after.is_none_or(|c| !is_name_char(c));
        out.push_str(&rest[..i]);
        out.push_str(if starts_word && ends_word {
            flag
        } else {
            field
        });
        rest = &rest[i + field.len()..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::name_flags;

    const NODE: &[(&str, &str)] = &[
        ("edge_url", "--edge-url"),
        ("edge_credentials.user", "--edge-user"),
        ("k8s_node_name", "--k8s-node-name"),
        ("labels.", "--label "),
    ];

    #[test]
    fn fields_become_flags() {
        assert_eq!(
            name_flags(
                "edge_url: \"x\" is not a URL; labels.zone: must be 63 characters or fewer",
                NODE
            ),
            "--edge-url: \"x\" is not a URL; --label zone: must be 63 characters or fewer"
        );
        assert_eq!(
            name_flags("edge_credentials.user: must be non-empty", NODE),
            "--edge-user: must be non-empty"
        );
        assert_eq!(
            name_flags("missing field `edge_url`", NODE),
            "missing field `--edge-url`"
        );
    }

    #[test]
    fn longer_names_and_values_stay() {
        assert_eq!(
            name_flags("my_edge_url and edge_urls and x.edge_url", NODE),
            "my_edge_url and edge_urls and x.edge_url"
        );
        assert_eq!(
            name_flags("no cluster named \"c\"", NODE),
            "no cluster named \"c\""
        );
    }
}

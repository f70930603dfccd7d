//! JSON as the docker CLI prints it: Go's `json.Indent` over the daemon's bytes, which
//! keeps the daemon's key order, number spelling and string escapes.

/// Re-indents JSON text like Go's `json.Indent(dst, src, "", indent)`: one element per
/// line, `"key": value`, and `{}` / `[]` for empty objects and arrays. The input must
/// be valid JSON (check with serde_json first).
pub fn indent(src: &str, indent: &str) -> String {
    let mut out = String::with_capacity(src.len() * 2);
    let mut depth = 0usize;
    let mut need_indent = false;
    let mut chars = src.chars();
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        for _ in 0..depth {
            out.push_str(indent);
        }
    };
    while let Some(c) = chars.next() {
        if c.is_ascii_whitespace() {
            continue;
        }
        if need_indent && c != '}' && c != ']' {
            need_indent = false;
            depth += 1;
            newline(&mut out, depth);
        }
        match c {
            '"' => {
                out.push('"');
                let mut escaped = false;
                for s in chars.by_ref() {
                    out.push(s);
                    if escaped {
                        escaped = false;
                    } else if s == '\\' {
                        escaped = true;
                    } else if s == '"' {
                        break;
                    }
                }
            }
            '{' | '[' => {
                out.push(c);
                need_indent = true;
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            '}' | ']' => {
                if need_indent {
                    need_indent = false;
                } else {
                    depth = depth.saturating_sub(1);
                    newline(&mut out, depth);
                }
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indents_like_go() {
        let src = r#"[{"Id":"sha256:ab","RepoTags":["a:1"],"Empty":[],"Obj":{},"N":4300000,"S":"a, b: {c}"}]"#;
        let want = "[\n    {\n        \"Id\": \"sha256:ab\",\n        \"RepoTags\": [\n            \"a:1\"\n        ],\n        \"Empty\": [],\n        \"Obj\": {},\n        \"N\": 4300000,\n        \"S\": \"a, b: {c}\"\n    }\n]";
        assert_eq!(indent(src, "    "), want);
    }

    #[test]
    fn keeps_escapes_and_numbers() {
        assert_eq!(
            indent(r#"{"a":"q\"\u003c","b":1.50}"#, "  "),
            "{\n  \"a\": \"q\\\"\\u003c\",\n  \"b\": 1.50\n}"
        );
        assert_eq!(indent(" [ ] ", "  "), "[]");
    }
}

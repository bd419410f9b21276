//! Tests of the dialect: tables of tricky inputs with their expected variables or errors, the
//! editor on concrete files, and property tests that rendering, editing and parsing agree.

use proptest::prelude::*;

use super::*;
use crate::envset::EnvSet;
use crate::secret::SecretValue;

fn no_env() -> ParseOptions<'static> {
    ParseOptions::default()
}

fn vars(text: &str) -> EnvSet {
    match parse(text, &no_env()) {
        Ok(parsed) => parsed.vars,
        Err(e) => panic!("{text:?} should parse, got {e}"),
    }
}

fn set(pairs: &[(&str, &str)]) -> EnvSet {
    pairs.iter().map(|&(k, v)| (k, v)).collect()
}

fn exposed(set: &EnvSet) -> Vec<(String, String)> {
    set.iter()
        .map(|(k, v)| (k.clone(), v.expose().to_owned()))
        .collect()
}

/// Inputs and the exact set of variables each defines.
const CASES: &[(&str, &[(&str, &str)])] = &[
    // Assignments, `export` and spacing.
    ("A=b", &[("A", "b")]),
    ("A=b\n", &[("A", "b")]),
    ("export A=b", &[("A", "b")]),
    ("  export\tA = b  ", &[("A", "b")]),
    ("A = b", &[("A", "b")]),
    ("A\t=\tb", &[("A", "b")]),
    ("export=1", &[("export", "1")]),
    ("export =1", &[("export", "1")]),
    ("exportA=1", &[("exportA", "1")]),
    ("a.b-c_D9=1", &[("a.b-c_D9", "1")]),
    ("_X=1", &[("_X", "1")]),
    // Comments and blank lines.
    ("# c\n\n  # indented\n\t \nA=1\n\n# end", &[("A", "1")]),
    ("", &[]),
    ("\n\n", &[]),
    ("# only a comment", &[]),
    // Unquoted values: inline comments need a blank before the `#`.
    ("A=b#c", &[("A", "b#c")]),
    ("A=b #c", &[("A", "b")]),
    ("A=b\t# c", &[("A", "b")]),
    ("A=#c", &[("A", "#c")]),
    ("A= #c", &[("A", "")]),
    ("A=  b c  ", &[("A", "b c")]),
    ("A=it's", &[("A", "it's")]),
    ("A=a\"b", &[("A", "a\"b")]),
    ("A=a\\b", &[("A", "a\\b")]),
    ("A=a=b", &[("A", "a=b")]),
    // Empty values.
    ("A=", &[("A", "")]),
    ("A=\nB=1", &[("A", ""), ("B", "1")]),
    ("A=\"\"", &[("A", "")]),
    ("A=''", &[("A", "")]),
    ("A=   ", &[("A", "")]),
    // Single quotes: literal, no escapes, no expansion, may span lines.
    ("A='$B \\n #x'", &[("A", "$B \\n #x")]),
    ("A='${B}'", &[("A", "${B}")]),
    ("A='say \"hi\"'", &[("A", "say \"hi\"")]),
    (
        "A='line1\nline2'\nB=x",
        &[("A", "line1\nline2"), ("B", "x")],
    ),
    ("A='x' # comment", &[("A", "x")]),
    ("A='x'#c", &[("A", "x")]),
    ("A=  'x'  ", &[("A", "x")]),
    // Double quotes: escapes, expansion, may span lines.
    (
        "A=\"a\\nb\\tc\\\"d\\\\e\\$f\\rg\"",
        &[("A", "a\nb\tc\"d\\e$f\rg")],
    ),
    ("A=\"\\q\"", &[("A", "\\q")]),
    ("A=\"it's\"", &[("A", "it's")]),
    ("A=\"a #b\"", &[("A", "a #b")]),
    (
        "A=\"line1\nline2\"\nB=x",
        &[("A", "line1\nline2"), ("B", "x")],
    ),
    ("A=\"a\\\nb\"", &[("A", "a\\\nb")]),
    ("A=\"x\"#c", &[("A", "x")]),
    ("A=\"x\"  # c", &[("A", "x")]),
    ("A=\"a\\\\\"", &[("A", "a\\")]),
    // CRLF: the `\r` is never part of a value, quoted or not.
    (
        "A=b\r\nB='x'\r\nC=\"y\" # c\r\n\r\n# d\r\nD=\r\n",
        &[("A", "b"), ("B", "x"), ("C", "y"), ("D", "")],
    ),
    (
        "A='1\r\n2'\r\nB=\"3\r\n4\"\r\n",
        &[("A", "1\n2"), ("B", "3\n4")],
    ),
    ("A=b \r\n", &[("A", "b")]),
    // A BOM at the start is skipped.
    ("\u{feff}A=b\n", &[("A", "b")]),
    ("\u{feff}# c\nA=b", &[("A", "b")]),
    // Expansion.
    (
        "A=x\nB=${A}\nC=$A\nD=${A}y$A\nE=\"<$A>\"",
        &[
            ("A", "x"),
            ("B", "x"),
            ("C", "x"),
            ("D", "xyx"),
            ("E", "<x>"),
        ],
    ),
    (
        "E=\nA=${U:-d}\nB=${U-d}\nC=${E:-d}\nD=${E-d}",
        &[("E", ""), ("A", "d"), ("B", "d"), ("C", "d"), ("D", "")],
    ),
    (
        "A=x\nB=${A:-d}\nC=${A-d}",
        &[("A", "x"), ("B", "x"), ("C", "x")],
    ),
    ("A=\"${U:-a b}\"", &[("A", "a b")]),
    ("A=${U:-}", &[("A", "")]),
    ("A=${U-$x}", &[("A", "$x")]),
    ("AB=1\nA=2\nC=$AB", &[("AB", "1"), ("A", "2"), ("C", "1")]),
    ("A=1\nC=$A.x", &[("A", "1"), ("C", "1.x")]),
    ("A_B=1\nC=$A_B-x", &[("A_B", "1"), ("C", "1-x")]),
    ("A=1\nA=${A}2", &[("A", "12")]),
    (
        "A=x\nB='${A}'\nC=${B}",
        &[("A", "x"), ("B", "${A}"), ("C", "${A}")],
    ),
    ("A=$\nB=${A}", &[("A", "$"), ("B", "$")]),
    // `\$` keeps a `$`, in unquoted and double-quoted values.
    ("A=\\$B", &[("A", "$B")]),
    ("A=\"\\$B\"", &[("A", "$B")]),
    ("A=pa\\$word", &[("A", "pa$word")]),
    // Only the backslash right before the `$` escapes it; the other one is literal.
    ("A=\\\\$", &[("A", "\\$")]),
    // A `$` that starts no name is literal.
    ("A=$5", &[("A", "$5")]),
    ("A=$", &[("A", "$")]),
    ("A=a$", &[("A", "a$")]),
    ("A=$ b", &[("A", "$ b")]),
    ("A=\"$\"", &[("A", "$")]),
    ("A=$$", &[("A", "$$")]),
    ("A=\"cost: $5.00\"", &[("A", "cost: $5.00")]),
    // Duplicates: the last definition wins.
    ("A=1\nA=2", &[("A", "2")]),
    (
        "A=1\nB=$A\nA=2\nC=$A",
        &[("A", "2"), ("B", "1"), ("C", "2")],
    ),
    // Keys alike in their first bytes (the duplicate search compares those first).
    (
        "NEXT_PUBLIC_B=1\nNEXT_PUBLIC_A=2\nNEXT_PUBLIC_B=3\nNEXT_PUBLIC=4\nNEXT_PUBLIC_A=5",
        &[
            ("NEXT_PUBLIC", "4"),
            ("NEXT_PUBLIC_A", "5"),
            ("NEXT_PUBLIC_B", "3"),
        ],
    ),
    // Unicode.
    ("A=héllo wörld 😀", &[("A", "héllo wörld 😀")]),
    (
        "A='日本 語'\nB=\"ü\\nß\"",
        &[("A", "日本 語"), ("B", "ü\nß")],
    ),
];

#[test]
fn table_of_valid_inputs() {
    for &(input, expected) in CASES {
        let got = vars(input);
        assert_eq!(exposed(&got), exposed(&set(expected)), "input {input:?}");
    }
}

/// Inputs that must fail, with the 1-based line and char column of the error and a part of
/// its message.
const ERRORS: &[(&str, usize, usize, &str)] = &[
    // NUL bytes, wherever they are: no environment variable can hold one.
    ("A=x\0y", 1, 4, "NUL byte"),
    ("A=1\nB=\"two\0\"", 2, 7, "NUL byte"),
    ("A=1\n# note \0\n", 2, 8, "NUL byte"),
    ("\u{feff}K=é\0", 1, 4, "NUL byte"),
    // A lone carriage return, wherever it is: python-dotenv and Node's dotenv end the line
    // there (old Mac line endings would otherwise read as one long value).
    ("A=x\ry\nB=2\n", 1, 4, "carriage return without a line feed"),
    ("A=1\rB=2\rC=3", 1, 4, "carriage return without a line feed"),
    (
        "A=1\r\nB=\"p\rq\"\r\n",
        2,
        5,
        "carriage return without a line feed",
    ),
    (
        "A=1\n# note\r\n\r",
        3,
        1,
        "carriage return without a line feed",
    ),
    ("1A=b", 1, 1, "invalid key"),
    (
        "A B=c",
        1,
        2,
        "invalid key: a key starts with a letter or `_`",
    ),
    ("FO$O=1", 1, 3, "invalid key"),
    ("É=1", 1, 1, "invalid key"),
    ("A=1\n  =2", 2, 3, "invalid key"),
    ("FOO", 1, 4, "expected `=` after the key"),
    ("FOO # c", 1, 5, "expected `=` after the key"),
    ("export A", 1, 9, "expected `=` after the key"),
    (
        "A=1\nB='abc",
        2,
        3,
        "unterminated single-quoted value of `B`",
    ),
    (
        "A=\"abc\nd",
        1,
        3,
        "unterminated double-quoted value of `A`",
    ),
    ("A=\"abc\\\"", 1, 3, "unterminated double-quoted"),
    ("A='x'y", 1, 6, "unexpected text after the closing quote"),
    ("A=\"x\" y", 1, 7, "unexpected text after the closing quote"),
    (
        "A=\"日本\" x",
        1,
        8,
        "unexpected text after the closing quote",
    ),
    (
        "A=$B",
        1,
        3,
        "the `$` here starts a reference to a variable not defined earlier in this file",
    ),
    ("A=pa$word", 1, 5, "the `$` here starts a reference"),
    (
        "A=pa$word",
        1,
        5,
        "use single quotes ('…') or escape it as `\\$`",
    ),
    ("A=pa$word", 1, 5, "pass --interpolate-env"),
    ("A=\"pa$word\"", 1, 6, "the `$` here starts a reference"),
    ("A=${B}\nB=1", 1, 3, "`${B}` refers to `B`"),
    ("A=x\nB=${A}${C}", 2, 7, "`${C}` refers to `C`"),
    ("A=\"x ${B\"", 1, 6, "unterminated `${`"),
    ("A=${B", 1, 3, "unterminated `${`"),
    ("A=${B #c}", 1, 3, "unterminated `${`"),
    ("A=${}", 1, 3, "must be followed by a variable name"),
    ("A=${B?x}", 1, 6, "must continue with"),
    // Columns count chars, not bytes; a BOM is not a column.
    ("A=é$B", 1, 4, "the `$` here"),
    ("A=😀😀 $B", 1, 6, "the `$` here"),
    ("\u{feff}A=$X", 1, 3, "the `$` here"),
    ("A=1\r\nB=$X\r\n", 2, 3, "the `$` here"),
    ("A=\"line1\nli$X\"", 2, 3, "the `$` here"),
    (
        "A='a\nb'\nB=\"c\nd\" e",
        4,
        4,
        "unexpected text after the closing quote",
    ),
];

#[test]
fn table_of_errors() {
    for &(input, line, column, part) in ERRORS {
        match parse(input, &no_env()) {
            Ok(_) => panic!("{input:?} should not parse"),
            Err(e) => {
                assert_eq!((e.line, e.column), (line, column), "input {input:?}: {e}");
                assert!(e.message.contains(part), "input {input:?}: {e}");
                assert_eq!(e.to_string(), format!("{line}:{column}: {}", e.message));
            }
        }
    }
}

#[test]
fn errors_never_show_the_value() {
    for input in [
        "PASS=hunter2$word",
        "PASS=\"hunter2${word\"",
        "PASS='hunter2",
        "PASS=\"hunter2",
        "PASS=\"hunter2\"x",
        "PASS=\"hunter2 ${}\"",
    ] {
        let Err(e) = parse(input, &no_env()) else {
            panic!("{input:?} should not parse");
        };
        assert!(!e.message.contains("hunter2"), "{input:?}: {e}");
        assert!(!format!("{e:?}").contains("hunter2"), "{input:?}: {e:?}");
    }
}

#[test]
fn debug_output_never_shows_values() {
    let Ok(parsed) = parse("PASS=hunter2\nPASS=hunter3\n", &no_env()) else {
        panic!("should parse");
    };
    let debug = format!("{parsed:?}");
    assert!(!debug.contains("hunter"), "{debug}");
    let value = SecretValue::new("hunter2");
    let edit = Edit::Set {
        key: "PASS",
        value: &value,
    };
    assert!(!format!("{edit:?}").contains("hunter"));
}

#[test]
fn duplicates_warn_at_the_later_definition() {
    let Ok(parsed) = parse("A=1\nB=2\n  A=3\n", &no_env()) else {
        panic!("should parse");
    };
    assert_eq!(parsed.vars.get("A").map(SecretValue::expose), Some("3"));
    assert_eq!(parsed.warnings.len(), 1);
    let w = &parsed.warnings[0];
    assert_eq!((w.line, w.column), (3, 3));
    assert!(
        w.message.contains("`A`") && w.message.contains("line 1"),
        "{w}"
    );
    assert_eq!(w.to_string(), format!("3:3: {}", w.message));
    assert!(!w.message.contains("=3"));
}

#[test]
fn entries_record_lines_spans_and_export() {
    let text = "# c\nexport A=1 # x\n\nB='m\nl'\r\n  C=3";
    let Ok(parsed) = parse(text, &no_env()) else {
        panic!("should parse");
    };
    let got: Vec<(&str, usize, &str, bool)> = parsed
        .entries
        .iter()
        .map(|e| (e.key.as_str(), e.line, &text[e.span.clone()], e.exported))
        .collect();
    assert_eq!(
        got,
        [
            ("A", 2, "export A=1 # x", true),
            ("B", 4, "B='m\nl'", false),
            ("C", 6, "C=3", false),
        ]
    );
    let Ok(dups) = parse("A=1\nA=2\n", &no_env()) else {
        panic!("should parse");
    };
    assert_eq!(dups.entries.len(), 2);
}

#[test]
fn env_fallback_only_when_given_and_not_defined_in_the_file() {
    let env = |name: &str| match name {
        "HOME" => Some("/home/me".to_owned()),
        "A" => Some("from-env".to_owned()),
        "EMPTY" => Some(String::new()),
        _ => None,
    };
    let with_env = ParseOptions {
        env_fallback: Some(&env),
    };
    let text = "X=$HOME/x\nA=file\nY=${A}\nZ=${EMPTY:-d}\nW=${EMPTY-d}";
    let Ok(parsed) = parse(text, &with_env) else {
        panic!("should parse");
    };
    assert_eq!(
        exposed(&parsed.vars),
        exposed(&set(&[
            ("X", "/home/me/x"),
            ("A", "file"),
            ("Y", "file"),
            ("Z", "d"),
            ("W", ""),
        ]))
    );
    // A reference *before* the file defines the key falls back to the environment.
    let Ok(early) = parse("Y=${A}\nA=file", &with_env) else {
        panic!("should parse");
    };
    assert_eq!(
        early.vars.get("Y").map(SecretValue::expose),
        Some("from-env")
    );
    // Without a fallback the same file is an error; with one, an unknown name still is.
    assert!(parse("X=$HOME/x", &no_env()).is_err());
    match parse("X=$NOPE", &with_env) {
        Err(e) => {
            assert!(e.message.contains("nor set in the environment"), "{e}");
            assert!(!e.message.contains("--interpolate-env"), "{e}");
        }
        Ok(_) => panic!("an unknown name is still an error"),
    }
    assert!(format!("{with_env:?}").contains("Some"));
}

#[test]
fn is_valid_key_matches_the_grammar() {
    for key in ["A", "_", "a.b-c", "A1", "export"] {
        assert!(is_valid_key(key), "{key}");
    }
    for key in ["", "1A", "-A", ".A", "A B", "A=", "É", "A$"] {
        assert!(!is_valid_key(key), "{key}");
    }
}

#[test]
fn render_line_picks_the_plainest_quoting() {
    let cases = [
        ("", "K="),
        ("abc", "K=abc"),
        ("postgres://u@h:5432/db?x", "K='postgres://u@h:5432/db?x'"),
        ("a-b_c.d/e:f@g+h,i=j%k^l", "K=a-b_c.d/e:f@g+h,i=j%k^l"),
        ("two words", "K='two words'"),
        ("$HOME", "K='$HOME'"),
        ("a\nb", "K='a\nb'"),
        ("it's", "K=\"it's\""),
        ("a\r\nb", "K=\"a\\r\\nb\""),
        ("#x", "K='#x'"),
        // A lone carriage return: only `\r` in double quotes reads as one everywhere.
        ("a\rb", "K=\"a\\rb\""),
        // `\$` and `\\` would read differently in python-dotenv or Node: kept literal.
        ("\\$", "K='\\$'"),
        ("a\\b", "K='a\\b'"),
        ("it's $5 \\o/", "K=\"it's $5 \\o/\""),
        ("price: $5\n", "K='price: $5\n'"),
        ("it's \"x\"", "K=it's \"x\""),
        ("${not closed", "K='${not closed'"),
        ("a\tb", "K='a\tb'"),
        // Quotes cannot carry `\\` alike; unquoted, every parser keeps backslashes.
        ("C:\\\\dir", "K=C:\\\\dir"),
        ("x\\", "K=x\\"),
        ("it's \\n", "K=it's \\n"),
    ];
    for (value, line) in cases {
        assert_eq!(
            render_line("K", value).as_deref(),
            Ok(line),
            "value {value:?}"
        );
        assert_eq!(exposed(&vars(line)), [("K".to_owned(), value.to_owned())]);
    }
    let s = set(&[("B", "two words"), ("A", "1")]);
    assert_eq!(render(&s).as_deref(), Ok("A=1\nB='two words'\n"));
    assert_eq!(render(&EnvSet::new()).as_deref(), Ok(""));
}

/// Values no form carries alike for Bridge, python-dotenv and Node's dotenv are refused by
/// key, and the message never holds the value.
#[test]
fn render_line_refuses_what_no_form_reads_alike() {
    for value in [
        "it's \"$x\" \\ \n\r",
        "${HOME}",
        "a${X:-y}b",
        "${}",
        "'\"\r",
        "\"\n'",
        "a\0b",
        " 'quoted\" ",
        "'\"$HOME",
        "it's \"\\$\"",
    ] {
        let err = render_line("SECRET_K", value).expect_err(value);
        assert_eq!(err.key, "SECRET_K");
        let message = err.to_string();
        assert!(message.contains("`SECRET_K`"), "{message}");
        assert!(!message.contains(value), "{message} shows {value:?}");
        assert!(check_value(value).is_err());
        assert!(render(&set(&[("SECRET_K", value)])).is_err());
        let v = SecretValue::new(value);
        let result = apply_edits(
            "A=1\n",
            &[Edit::Set {
                key: "SECRET_K",
                value: &v,
            }],
            &no_env(),
        );
        assert!(
            matches!(result, Err(EditError::Unwritable(ref e)) if e.key == "SECRET_K"),
            "{result:?}"
        );
    }
}

/// python-dotenv takes `K=  # comment` as the value `# comment`: an emptied value keeps its
/// comment as `K='' # comment`.
#[test]
fn an_emptied_value_keeps_its_comment_behind_quotes() {
    let empty = SecretValue::new("");
    for (original, expected) in [
        ("K=abc  # the comment\n", "K=''  # the comment\n"),
        ("export K='x'# c\n", "export K='' # c\n"),
        ("K=abc\n", "K=\n"),
    ] {
        let text = edit(
            original,
            &[Edit::Set {
                key: "K",
                value: &empty,
            }],
        );
        assert_eq!(text, expected);
        assert_eq!(exposed(&vars(&text)), [("K".to_owned(), String::new())]);
    }
}

fn edit(original: &str, edits: &[Edit<'_>]) -> String {
    match apply_edits(original, edits, &no_env()) {
        Ok(text) => text,
        Err(e) => panic!("edit of {original:?} failed: {e}"),
    }
}

#[test]
fn edits_leave_untouched_lines_byte_identical() {
    let original = concat!(
        "\u{feff}# header\r\n",
        "\r\n",
        "export HOST=db # the host\r\n",
        "  PORT = 5432\r\n",
        "NAME='app'\r\n",
        "# tail\r\n",
        "OLD=1\r\n",
        "LAST=x",
    );
    let value = SecretValue::new("db2");
    let port = SecretValue::new("5432");
    let new = SecretValue::new("new value");
    let got = edit(
        original,
        &[
            Edit::Set {
                key: "HOST",
                value: &value,
            },
            Edit::Set {
                key: "PORT",
                value: &port,
            },
            Edit::Remove { key: "OLD" },
            Edit::Set {
                key: "NEW",
                value: &new,
            },
        ],
    );
    assert_eq!(
        got,
        concat!(
            "\u{feff}# header\r\n",
            "\r\n",
            "export HOST=db2 # the host\r\n",
            "  PORT = 5432\r\n",
            "NAME='app'\r\n",
            "# tail\r\n",
            "LAST=x\r\n",
            "NEW='new value'\r\n",
        )
    );
}

#[test]
fn unchanged_set_and_no_edits_leave_the_text_identical() {
    let original = "A = 'x'  # keep\nB=\"y\"\n\n# c\nC=${A}";
    let x = SecretValue::new("x");
    let y = SecretValue::new("y");
    assert_eq!(
        edit(
            original,
            &[
                Edit::Set {
                    key: "A",
                    value: &x
                },
                Edit::Set {
                    key: "B",
                    value: &y
                },
                Edit::Remove { key: "MISSING" },
            ]
        ),
        original
    );
    assert_eq!(edit(original, &[]), original);
}

#[test]
fn set_rewrites_the_last_definition_only() {
    let v = SecretValue::new("3");
    assert_eq!(
        edit(
            "A=1\nB=x\nA=2\n",
            &[Edit::Set {
                key: "A",
                value: &v
            }]
        ),
        "A=1\nB=x\nA=3\n"
    );
}

#[test]
fn remove_deletes_every_definition_with_its_lines() {
    let original = "A=1\n# keep\n  A='multi\nline' # c\nB=2\nA=3";
    assert_eq!(
        edit(original, &[Edit::Remove { key: "A" }]),
        "# keep\nB=2\n"
    );
    assert_eq!(
        edit("\u{feff}A=1\r\nB=2\r\n", &[Edit::Remove { key: "A" }]),
        "\u{feff}B=2\r\n"
    );
}

#[test]
fn new_keys_are_appended_with_the_file_line_ending() {
    let v = SecretValue::new("v");
    let set_n = [Edit::Set {
        key: "N",
        value: &v,
    }];
    assert_eq!(edit("", &set_n), "N=v\n");
    assert_eq!(edit("\u{feff}", &set_n), "\u{feff}N=v\n");
    assert_eq!(edit("A=1", &set_n), "A=1\nN=v\n");
    assert_eq!(edit("A=1\n", &set_n), "A=1\nN=v\n");
    assert_eq!(edit("A=1\r\nB=2", &set_n), "A=1\r\nB=2\r\nN=v\r\n");
    assert_eq!(edit("# c", &set_n), "# c\nN=v\n");
    // A later edit of the same key overrides an earlier one.
    let w = SecretValue::new("w");
    assert_eq!(
        edit(
            "A=1\n",
            &[
                Edit::Set {
                    key: "N",
                    value: &v
                },
                Edit::Remove { key: "N" },
                Edit::Set {
                    key: "A",
                    value: &w
                },
            ]
        ),
        "A=w\n"
    );
}

#[test]
fn a_rewritten_line_keeps_export_and_its_comment() {
    let v = SecretValue::new("two words");
    assert_eq!(
        edit(
            "export A=\"x\"#note\n",
            &[Edit::Set {
                key: "A",
                value: &v
            }]
        ),
        "export A='two words' #note\n"
    );
    let w = SecretValue::new("w");
    assert_eq!(
        edit(
            "A=x   # note\n",
            &[Edit::Set {
                key: "A",
                value: &w
            }]
        ),
        "A=w   # note\n"
    );
}

#[test]
fn lines_referring_to_an_edited_key_keep_their_value() {
    let b = SecretValue::new("b");
    let original = "HOST=a\nURL=${HOST}/x\nOTHER=${URL}!\n";
    assert_eq!(
        edit(
            original,
            &[Edit::Set {
                key: "HOST",
                value: &b
            }]
        ),
        "HOST=b\nURL=a/x\nOTHER=${URL}!\n"
    );
    // Removing the key would leave the reference dangling: it becomes literal too.
    assert_eq!(
        edit(original, &[Edit::Remove { key: "HOST" }]),
        "URL=a/x\nOTHER=${URL}!\n"
    );
    // A reference to an earlier definition that the edit does not change is left alone.
    let three = SecretValue::new("3");
    assert_eq!(
        edit(
            "A=1\nB=$A\nA=2\n",
            &[Edit::Set {
                key: "A",
                value: &three
            }]
        ),
        "A=1\nB=$A\nA=3\n"
    );
}

#[test]
fn overridden_definitions_change_only_when_they_must() {
    let b = SecretValue::new("b");
    let original = "H=a\nK=${H}\nK=z\n";
    // Nothing observes the first `K`: its value may follow `H`.
    assert_eq!(
        edit(
            original,
            &[Edit::Set {
                key: "H",
                value: &b
            }]
        ),
        "H=b\nK=${H}\nK=z\n"
    );
    // Without `H` its reference would not resolve.
    assert_eq!(edit(original, &[Edit::Remove { key: "H" }]), "K=a\nK=z\n");
    // `L` observes the first `K`, so that one keeps its value.
    assert_eq!(
        edit(
            "H=a\nK=${H}\nL=$K\nK=z\n",
            &[Edit::Set {
                key: "H",
                value: &b
            }]
        ),
        "H=b\nK=a\nL=$K\nK=z\n"
    );
}

#[test]
fn edit_of_an_unparsable_file_is_an_error() {
    let v = SecretValue::new("v");
    let Err(EditError::Parse(e)) = apply_edits(
        "A=$X\n",
        &[Edit::Set {
            key: "A",
            value: &v,
        }],
        &no_env(),
    ) else {
        panic!("should fail");
    };
    assert_eq!((e.line, e.column), (1, 3));
}

/// A file the size the speed requirement is stated for: parsed for correctness here; its
/// speed is measured in a release build, not in a unit test.
#[test]
fn parses_a_large_generated_file() {
    let mut text = String::new();
    for n in 0..100_000 {
        match n % 10 {
            0 => text.push_str(&format!("# section {n}\n")),
            1 => text.push_str(&format!("KEY_{n}=\"quoted value {n}\\n\"\n")),
            2 => text.push_str(&format!("KEY_{n}='single $quoted {n}'\n")),
            3 => text.push_str(&format!("KEY_{n}=value_{n} # trailing comment\n")),
            _ => text.push_str(&format!(
                "KEY_{n}=value-{n}-abcdefghijklmnopqrstuvwxyz0123456789\n"
            )),
        }
    }
    let Ok(parsed) = parse(&text, &no_env()) else {
        panic!("should parse");
    };
    assert_eq!(parsed.entries.len(), 90_000);
    assert_eq!(parsed.vars.len(), 90_000);
    assert_eq!(
        parsed.vars.get("KEY_11").map(SecretValue::expose),
        Some("quoted value 11\n")
    );
    assert_eq!(parsed.entries[89_999].line, 100_000);
}

fn key_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z_][A-Za-z0-9_.-]{0,8}",
        // Long keys sharing their first bytes.
        "SHARED_PREFIX_[A-C]{0,3}",
    ]
}

fn value_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9 '\"$#\\\\\n\r\t{}=:/é😀-]{0,16}",
        "[ \t]*[a-z$'\"]{0,4}[ \t\r\n]*",
        any::<String>(),
    ]
}

/// A line of a generated original file.
#[derive(Debug, Clone)]
enum Line {
    Comment(usize),
    Blank,
    Assign(usize, String),
    /// `KEY=${OTHER}suffix`: exercises edits of keys others refer to.
    Refer(usize, usize),
}

const POOL: &[&str] = &["A", "B", "C", "D", "E", "F"];

fn line_strategy() -> impl Strategy<Value = Line> {
    prop_oneof![
        (0..100usize).prop_map(Line::Comment),
        Just(Line::Blank),
        (0..POOL.len(), value_strategy()).prop_map(|(k, v)| Line::Assign(k, v)),
        (0..POOL.len(), 0..POOL.len()).prop_map(|(k, r)| Line::Refer(k, r)),
    ]
}

fn edit_strategy() -> impl Strategy<Value = (usize, Option<String>)> {
    // Keys past the pool's end are new keys.
    (
        0..POOL.len() + 2,
        prop::option::weighted(0.8, value_strategy()),
    )
}

fn pool_key(i: usize) -> String {
    POOL.get(i)
        .map_or_else(|| format!("NEW_{i}"), |k| (*k).to_owned())
}

/// Renders generated lines, skipping references to keys not yet defined (they would not
/// parse). Returns the text and its comment lines.
fn render_lines(lines: &[Line], crlf: bool) -> (String, Vec<String>) {
    let eol = if crlf { "\r\n" } else { "\n" };
    let mut text = String::new();
    let mut comments = Vec::new();
    let mut defined = [false; 6];
    for line in lines {
        let rendered = match line {
            Line::Comment(n) => {
                let c = format!("# comment {n}");
                comments.push(c.clone());
                c
            }
            Line::Blank => String::new(),
            Line::Assign(k, v) => match render_line(POOL[*k], v) {
                Ok(line) => {
                    defined[*k] = true;
                    line
                }
                // A value no form carries alike is not in a file Bridge wrote.
                Err(_) => continue,
            },
            Line::Refer(k, r) if defined[*r] => {
                defined[*k] = true;
                format!("{}=${{{}}}-x", POOL[*k], POOL[*r])
            }
            Line::Refer(..) => continue,
        };
        text.push_str(&rendered);
        text.push_str(eol);
    }
    (text, comments)
}

proptest! {
    #[test]
    fn render_line_round_trips(key in key_strategy(), value in value_strategy()) {
        let Ok(line) = render_line(&key, &value) else {
            return Ok(());
        };
        let parsed = parse(&line, &no_env());
        prop_assert!(parsed.is_ok(), "{:?} failed: {:?}", line, parsed.err());
        if let Ok(parsed) = parsed {
            prop_assert_eq!(exposed(&parsed.vars), vec![(key, value)]);
        }
    }

    #[test]
    fn render_round_trips(
        pairs in prop::collection::vec((key_strategy(), value_strategy()), 0..12)
    ) {
        let original: EnvSet = pairs
            .into_iter()
            .filter(|(_, value)| check_value(value).is_ok())
            .collect();
        let text = render(&original).unwrap_or_default();
        prop_assert!(text.is_empty() || text.ends_with('\n'));
        let parsed = parse(&text, &no_env());
        prop_assert!(parsed.is_ok(), "{:?} failed: {:?}", text, parsed.err());
        if let Ok(parsed) = parsed {
            prop_assert_eq!(exposed(&parsed.vars), exposed(&original));
        }
    }

    #[test]
    fn apply_edits_gives_the_intended_set_and_keeps_comments(
        lines in prop::collection::vec(line_strategy(), 0..16),
        edits in prop::collection::vec(edit_strategy(), 0..6),
        crlf in any::<bool>(),
    ) {
        let (original, comments) = render_lines(&lines, crlf);
        let mut intended = vars(&original);
        let keys: Vec<String> = edits.iter().map(|(k, _)| pool_key(*k)).collect();
        let values: Vec<Option<SecretValue>> =
            edits.iter().map(|(_, v)| v.as_deref().map(SecretValue::new)).collect();
        let edits: Vec<Edit<'_>> = keys
            .iter()
            .zip(&values)
            .map(|(key, value)| match value {
                Some(value) => Edit::Set { key, value },
                None => Edit::Remove { key },
            })
            .collect();
        for edit in &edits {
            match *edit {
                Edit::Set { key, value } => { intended.insert(key, value.clone()); }
                Edit::Remove { key } => { intended.remove(key); }
            }
        }
        let result = apply_edits(&original, &edits, &no_env());
        if let Err(EditError::Unwritable(e)) = &result {
            // Refused only for a value that truly has no form.
            let value = intended.get(&e.key).map(|v| v.expose().to_owned()).unwrap_or_default();
            prop_assert!(check_value(&value).is_err(), "{} refused but writable", e.key);
            return Ok(());
        }
        prop_assert!(result.is_ok(), "{:?}", result.err());
        let text = result.unwrap_or_default();
        let parsed = parse(&text, &no_env());
        prop_assert!(parsed.is_ok(), "{:?} failed: {:?}", text, parsed.err());
        if let Ok(parsed) = parsed {
            prop_assert_eq!(exposed(&parsed.vars), exposed(&intended));
        }
        let mut remaining = comments.iter();
        let mut next = remaining.next();
        for line in text.lines() {
            if next.is_some_and(|c| c == line) {
                next = remaining.next();
            }
        }
        prop_assert!(next.is_none(), "comment {:?} lost from {:?}", next, text);
        if edits.is_empty() {
            prop_assert_eq!(text, original);
        }
    }

    /// Undoing an edit with `restore_edits` gives back the original bytes, with what was
    /// added since (a line at the end) kept; undoing it by value gives the same values.
    #[test]
    fn restore_edits_gives_back_the_original_bytes(
        lines in prop::collection::vec(line_strategy(), 0..16),
        edits in prop::collection::vec(edit_strategy(), 0..6),
        crlf in any::<bool>(),
        outside in any::<bool>(),
    ) {
        let (original, _) = render_lines(&lines, crlf);
        let before = vars(&original);
        let keys: Vec<String> = edits.iter().map(|(k, _)| pool_key(*k)).collect();
        let values: Vec<Option<SecretValue>> =
            edits.iter().map(|(_, v)| v.as_deref().map(SecretValue::new)).collect();
        let forward: Vec<Edit<'_>> = keys
            .iter()
            .zip(&values)
            .map(|(key, value)| match value {
                Some(value) => Edit::Set { key, value },
                None => Edit::Remove { key },
            })
            .collect();
        let Ok(written) = apply_edits(&original, &forward, &no_env()) else {
            return Ok(());
        };
        // The undo by value, as a rollback plans it: the old value, or no key.
        let undo: Vec<Edit<'_>> = keys
            .iter()
            .map(|key| match before.get(key) {
                Some(value) => Edit::Set { key, value },
                None => Edit::Remove { key },
            })
            .collect();
        let eol = if crlf { "\r\n" } else { "\n" };
        let added = if outside { format!("# added since{eol}") } else { String::new() };
        let current = format!("{written}{added}");
        let got = restore_edits(&original, &written, &current, &undo, &no_env());
        prop_assert!(got.is_ok(), "{:?}", got.err());
        let got = got.unwrap_or_default();
        prop_assert_eq!(&got, &format!("{original}{added}"), "written: {:?}", written);
        prop_assert_eq!(exposed(&vars(&got)), exposed(&before));
    }

    #[test]
    fn duplicates_resolve_like_a_map_and_warn_once_each(
        pairs in prop::collection::vec((key_strategy(), "[a-z]{0,3}"), 0..24)
    ) {
        let mut text = String::new();
        let mut model = std::collections::BTreeMap::new();
        for (key, value) in &pairs {
            text.push_str(&render_line(key, value).unwrap_or_default());
            text.push('\n');
            model.insert(key.clone(), value.clone());
        }
        let parsed = parse(&text, &no_env());
        prop_assert!(parsed.is_ok());
        if let Ok(parsed) = parsed {
            prop_assert_eq!(exposed(&parsed.vars), model.clone().into_iter().collect::<Vec<_>>());
            prop_assert_eq!(parsed.warnings.len(), pairs.len() - model.len());
            prop_assert!(parsed.warnings.windows(2).all(|w| w[0].line < w[1].line));
            prop_assert_eq!(parsed.entries.len(), pairs.len());
        }
    }

    #[test]
    fn parse_never_panics(text in "[a-zA-Z0-9_ =\"'$\\{\\}#\\\\\n\r\té.-]{0,64}") {
        let _ = parse(&text, &no_env());
        let fallback = |name: &str| name.len().is_multiple_of(2).then(|| name.to_owned());
        let _ = parse(&text, &ParseOptions { env_fallback: Some(&fallback) });
    }

    #[test]
    fn parse_never_panics_on_any_string(text in any::<String>()) {
        let _ = parse(&text, &no_env());
    }
}

/// The other parsers that read what Bridge writes, run on real files: python-dotenv
/// (required in CI) and Node's dotenv (checked too where `require('dotenv')` resolves).
mod other_parsers {
    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};
    use std::process::Command;
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Prints each file's variables as one JSON object per line.
    const PYTHON: &str = "import json, sys\n\
        from dotenv import dotenv_values\n\
        for path in sys.argv[1:]:\n    print(json.dumps(dotenv_values(path)))\n";
    const NODE: &str = "const fs = require('fs'); const dotenv = require('dotenv');\n\
        for (const path of process.argv.slice(1)) \
        console.log(JSON.stringify(dotenv.parse(fs.readFileSync(path))));";

    pub(super) type Vars = BTreeMap<String, Option<String>>;

    fn runs(program: &str, args: &[&str]) -> bool {
        Command::new(program)
            .args(args)
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// Whether python-dotenv is there; absent, a test skips, unless CI requires it.
    pub(super) fn python() -> bool {
        static HAVE: OnceLock<bool> = OnceLock::new();
        *HAVE.get_or_init(|| {
            let have = runs("python3", &["-c", "import dotenv"]);
            if !have {
                assert!(
                    std::env::var("BRIDGE_REQUIRE_SERVICES").as_deref() != Ok("1"),
                    "python-dotenv is required (BRIDGE_REQUIRE_SERVICES=1) but `python3 -c \
                     'import dotenv'` fails: python3 -m pip install python-dotenv"
                );
                eprintln!(
                    "skipping the python-dotenv round trip: python-dotenv is not installed \
                     (python3 -m pip install python-dotenv)"
                );
            }
            have
        })
    }

    pub(super) fn node() -> bool {
        static HAVE: OnceLock<bool> = OnceLock::new();
        *HAVE.get_or_init(|| {
            let have = runs("node", &["-e", "require('dotenv')"]);
            if !have {
                eprintln!("not checking Node's dotenv: `node -e \"require('dotenv')\"` fails");
            }
            have
        })
    }

    /// A fresh file in the temporary directory holding `text`.
    pub(super) fn file(text: &str) -> PathBuf {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("bridge-dotenv-{}-{n}.env", std::process::id()));
        std::fs::write(&path, text).expect("write the .env file");
        path
    }

    fn read_with(program: &str, args: &[&str], paths: &[&Path]) -> Vec<Vars> {
        let output = Command::new(program)
            .args(args)
            .args(paths)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(std::env::var_os("NODE_PATH").map(|p| ("NODE_PATH", p)))
            .output()
            .unwrap_or_else(|e| panic!("running {program}: {e}"));
        assert!(
            output.status.success(),
            "{program} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(|line| serde_json::from_str(line).expect("a JSON object of variables"))
            .collect()
    }

    pub(super) fn python_reads(paths: &[&Path]) -> Vec<Vars> {
        read_with("python3", &["-c", PYTHON], paths)
    }

    pub(super) fn node_reads(paths: &[&Path]) -> Vec<Vars> {
        read_with("node", &["-e", NODE], paths)
    }
}

use other_parsers::Vars;

/// Values chosen to hit every rule of every parser: quotes, backslashes before the letters
/// each one decodes, `$` and `${…}`, `#`, blanks at the ends and line breaks of every kind.
fn hostile_value_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        value_strategy(),
        "[\\\\$'\"`{}\r\n#: a-]{0,8}",
        "[ \t]?[\\\\abfnrtv$'\"]{0,6}[ \t]?",
        prop::collection::vec(
            prop_oneof![
                Just("\\$".to_owned()),
                Just("\\\\".to_owned()),
                Just("\r".to_owned()),
                Just("\r\n".to_owned()),
                Just("${A}".to_owned()),
                Just("${".to_owned()),
                Just(" # ".to_owned()),
                Just("'".to_owned()),
                Just("\"".to_owned()),
                Just("\\n".to_owned()),
                Just("x".to_owned()),
                Just("\u{2028}".to_owned()),
                Just("\u{a0}".to_owned()),
            ],
            0..6
        )
        .prop_map(|parts| parts.concat()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(128)
    ))]

    /// Every value Bridge writes — into a new file, or in place of a commented line of an
    /// existing (LF or CRLF) file — reads back the same in Bridge's parser and in
    /// python-dotenv (and Node's dotenv where it is installed).
    #[test]
    fn written_values_read_the_same_in_python_dotenv_and_node(
        values in prop::collection::vec(hostile_value_strategy(), 1..24),
        crlf in any::<bool>(),
    ) {
        if !other_parsers::python() {
            return Ok(());
        }
        let keys: Vec<String> = (0..values.len()).map(|i| format!("K{i}")).collect();
        let expected: std::collections::BTreeMap<String, String> = keys
            .iter()
            .zip(&values)
            .filter(|(_, value)| check_value(value).is_ok())
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        let set: EnvSet = expected.clone().into_iter().collect();
        let rendered = render(&set);
        prop_assert!(rendered.is_ok(), "{:?}", rendered.err());
        let rendered = rendered.unwrap_or_default();

        // An existing file with a comment on every line: the edit rewrites each value.
        let eol = if crlf { "\r\n" } else { "\n" };
        let original: String = keys
            .iter()
            .map(|key| format!("{key}=old  # keep {key}{eol}"))
            .collect();
        let secrets: Vec<SecretValue> = values.iter().map(|v| SecretValue::new(v.as_str())).collect();
        let edits: Vec<Edit<'_>> = keys
            .iter()
            .zip(&secrets)
            .filter(|(_, value)| check_value(value.expose()).is_ok())
            .map(|(key, value)| Edit::Set { key, value })
            .collect();
        let edited = apply_edits(&original, &edits, &no_env());
        prop_assert!(edited.is_ok(), "{:?}", edited.err());
        let edited = edited.unwrap_or_default();
        let mut expected_edited: Vars = keys.iter().map(|k| (k.clone(), Some("old".to_owned()))).collect();
        for (key, value) in &expected {
            expected_edited.insert(key.clone(), Some(value.clone()));
        }

        prop_assert_eq!(exposed(&vars(&rendered)), expected.clone().into_iter().collect::<Vec<_>>());
        let bridge_edited: Vars = exposed(&vars(&edited)).into_iter().map(|(k, v)| (k, Some(v))).collect();
        prop_assert_eq!(&bridge_edited, &expected_edited);

        let expected_new: Vars = expected.into_iter().map(|(k, v)| (k, Some(v))).collect();
        let (new_file, edited_file) = (other_parsers::file(&rendered), other_parsers::file(&edited));
        let paths = [new_file.as_path(), edited_file.as_path()];
        let python = other_parsers::python_reads(&paths);
        let node = other_parsers::node().then(|| other_parsers::node_reads(&paths));
        let _ = std::fs::remove_file(&new_file);
        let _ = std::fs::remove_file(&edited_file);
        prop_assert_eq!(&python[0], &expected_new, "python-dotenv, new file {:?}", rendered);
        prop_assert_eq!(&python[1], &expected_edited, "python-dotenv, edited file {:?}", edited);
        if let Some(node) = node {
            prop_assert_eq!(&node[0], &expected_new, "Node's dotenv, new file {:?}", rendered);
            prop_assert_eq!(&node[1], &expected_edited, "Node's dotenv, edited file {:?}", edited);
        }
    }
}

//! A tolerant parser of Ganesha's configuration syntax that keeps line numbers.
//!
//! The syntax (as Ganesha 4.3's lexer and grammar accept it): a file is a sequence of
//! definitions; a definition is `Name { definitions }` (a block, possibly nested, e.g. FSAL
//! inside EXPORT) or `Name = value, value, ...;` (a statement; the `;` is required, the value
//! list may be empty). Values are bare words, `"double quoted"` strings (backslash escapes) or
//! `'single quoted'` strings (no escapes). `#` starts a comment that runs to the end of the line.
//! Names compare case-insensitively, as in Ganesha.
//!
//! Where Ganesha's lexer would split a bare word that looks like one value — `4M` (a number then
//! a word) or `-flat.vmdk` (a minus sign then a word) — this parser reports it and suggests
//! quoting, because Ganesha would refuse the line. `%include`, `%dir` and `%url` are reported as
//! unsupported.

/// A node of a parsed file: a statement or a block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// `Name = values;`
    Stmt(Statement),
    /// `Name { ... }`
    Block(Block),
}

/// `Name = value, value;`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// The parameter name as written.
    pub name: String,
    /// The values, unquoted and unescaped, in order.
    pub values: Vec<String>,
    /// 1-based line of the name.
    pub line: u32,
}

/// `Name { body }`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// The block name as written.
    pub name: String,
    /// 1-based line of the name.
    pub line: u32,
    /// Statements and nested blocks, in order.
    pub body: Vec<Node>,
}

impl Block {
    /// The statements directly inside this block.
    pub fn statements(&self) -> impl Iterator<Item = &Statement> {
        self.body.iter().filter_map(|n| match n {
            Node::Stmt(s) => Some(s),
            Node::Block(_) => None,
        })
    }

    /// The blocks directly inside this block.
    pub fn blocks(&self) -> impl Iterator<Item = &Block> {
        self.body.iter().filter_map(|n| match n {
            Node::Block(b) => Some(b),
            Node::Stmt(_) => None,
        })
    }
}

/// A syntax error: line and reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// 1-based line.
    pub line: u32,
    /// What is wrong.
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    LBrace,
    RBrace,
    Eq,
    Semi,
    Comma,
    Word(String),
    Quoted(String),
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::LBrace => "`{`".into(),
            Tok::RBrace => "`}`".into(),
            Tok::Eq => "`=`".into(),
            Tok::Semi => "`;`".into(),
            Tok::Comma => "`,`".into(),
            Tok::Word(w) => format!("`{w}`"),
            Tok::Quoted(q) => format!("\"{q}\""),
        }
    }
}

/// Parses configuration text. Returns every syntax error found (the parser recovers at the
/// next `;` or `}`), or the top-level nodes.
pub fn parse(text: &str) -> Result<Vec<Node>, Vec<SyntaxError>> {
    let (toks, mut errs) = lex(text);
    let mut p = Parser {
        toks,
        pos: 0,
        errs: Vec::new(),
    };
    let nodes = p.definitions(None);
    errs.append(&mut p.errs);
    if errs.is_empty() && nodes.is_empty() {
        errs.push(SyntaxError {
            line: 1,
            reason: "empty configuration file (Ganesha refuses it)".into(),
        });
    }
    if errs.is_empty() {
        Ok(nodes)
    } else {
        errs.sort_by_key(|e| e.line);
        Err(errs)
    }
}

fn is_special(c: char) -> bool {
    c.is_whitespace() || matches!(c, '{' | '}' | '=' | ';' | ',' | '#' | '"' | '\'')
}

fn lex(text: &str) -> (Vec<(Tok, u32)>, Vec<SyntaxError>) {
    let mut toks = Vec::new();
    let mut errs = Vec::new();
    let mut line: u32 = 1;
    let mut it = text.chars().peekable();
    while let Some(c) = it.next() {
        match c {
            '\n' => line += 1,
            c if c.is_whitespace() => {}
            '#' => {
                while let Some(&n) = it.peek() {
                    if n == '\n' {
                        break;
                    }
                    it.next();
                }
            }
            '{' => toks.push((Tok::LBrace, line)),
            '}' => toks.push((Tok::RBrace, line)),
            '=' => toks.push((Tok::Eq, line)),
            ';' => toks.push((Tok::Semi, line)),
            ',' => toks.push((Tok::Comma, line)),
            '"' => {
                let start = line;
                let mut s = String::new();
                let mut closed = false;
                while let Some(n) = it.next() {
                    match n {
                        '"' => {
                            closed = true;
                            break;
                        }
                        '\\' => match it.next() {
                            Some('n') => s.push('\n'),
                            Some('t') => s.push('\t'),
                            Some('r') => s.push('\r'),
                            Some(e) => {
                                if e == '\n' {
                                    line += 1;
                                }
                                s.push(e)
                            }
                            None => break,
                        },
                        '\n' => {
                            line += 1;
                            s.push('\n');
                        }
                        _ => s.push(n),
                    }
                }
                if closed {
                    toks.push((Tok::Quoted(s), start));
                } else {
                    errs.push(SyntaxError {
                        line: start,
                        reason: "unterminated double-quoted string".into(),
                    });
                }
            }
            '\'' => {
                let start = line;
                let mut s = String::new();
                let mut closed = false;
                for n in it.by_ref() {
                    if n == '\'' {
                        closed = true;
                        break;
                    }
                    if n == '\n' {
                        line += 1;
                    }
                    s.push(n);
                }
                if closed {
                    toks.push((Tok::Quoted(s), start));
                } else {
                    errs.push(SyntaxError {
                        line: start,
                        reason: "unterminated single-quoted string".into(),
                    });
                }
            }
            '%' => {
                let mut w = String::from('%');
                while let Some(&n) = it.peek() {
                    if is_special(n) {
                        break;
                    }
                    w.push(n);
                    it.next();
                }
                errs.push(SyntaxError {
                    line,
                    reason: format!(
                        "`{w}` is not supported by strata's checker; put everything in one file"
                    ),
                });
                // Skip the rest of the line (the included path).
                while let Some(&n) = it.peek() {
                    if n == '\n' {
                        break;
                    }
                    it.next();
                }
            }
            _ => {
                let mut w = String::from(c);
                while let Some(&n) = it.peek() {
                    if is_special(n) {
                        break;
                    }
                    w.push(n);
                    it.next();
                }
                toks.push((Tok::Word(w), line));
            }
        }
    }
    (toks, errs)
}

/// Why Ganesha's lexer would not read this bare value as one token, if it would not.
fn bare_value_problem(w: &str) -> Option<String> {
    let first = w.chars().next()?;
    let lower = w.to_ascii_lowercase();
    let looks_numeric_prefix = first.is_ascii_digit()
        && !lower.starts_with("0x")
        && lower != "9p"
        && !w.contains(['.', ':', '/'])
        && w.chars().any(|c| c.is_ascii_alphabetic());
    let signed_word = (first == '-' || first == '~')
        && !w[1..].is_empty()
        && !w[1..]
            .chars()
            .all(|c| c.is_ascii_hexdigit() || c == 'x' || c == 'X');
    if looks_numeric_prefix || signed_word {
        Some(format!(
            "Ganesha reads the bare value `{w}` as two tokens; quote it: \"{w}\""
        ))
    } else {
        None
    }
}

fn is_identifier(w: &str) -> bool {
    let mut cs = w.chars();
    matches!(cs.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && cs.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

struct Parser {
    toks: Vec<(Tok, u32)>,
    pos: usize,
    errs: Vec<SyntaxError>,
}

impl Parser {
    fn peek(&self) -> Option<&(Tok, u32)> {
        self.toks.get(self.pos)
    }

    fn last_line(&self) -> u32 {
        self.toks.last().map(|t| t.1).unwrap_or(1)
    }

    fn err(&mut self, line: u32, reason: String) {
        self.errs.push(SyntaxError { line, reason });
    }

    /// Skips to just after the next `;` at this depth, or to (not past) a `}` that closes the
    /// current block.
    fn recover(&mut self) {
        let mut depth = 0usize;
        while let Some((t, _)) = self.peek() {
            match t {
                Tok::Semi if depth == 0 => {
                    self.pos += 1;
                    return;
                }
                Tok::LBrace => depth += 1,
                Tok::RBrace if depth == 0 => return,
                Tok::RBrace => depth -= 1,
                _ => {}
            }
            self.pos += 1;
        }
    }

    /// Definitions until EOF (top level, `open` None) or the `}` closing block `open`.
    fn definitions(&mut self, open: Option<(&str, u32)>) -> Vec<Node> {
        let mut nodes = Vec::new();
        loop {
            let Some((tok, line)) = self.peek().cloned() else {
                if let Some((name, l)) = open {
                    let end = self.last_line();
                    self.err(
                        end,
                        format!("block {name} opened on line {l} is not closed with `}}`"),
                    );
                }
                return nodes;
            };
            match tok {
                Tok::RBrace => {
                    self.pos += 1;
                    if open.is_some() {
                        return nodes;
                    }
                    self.err(line, "`}` without a block to close".into());
                }
                Tok::Word(name) => {
                    self.pos += 1;
                    if !is_identifier(&name) {
                        self.err(line, format!("`{name}` is not a valid name"));
                        self.recover();
                        continue;
                    }
                    match self.peek().cloned() {
                        Some((Tok::LBrace, _)) => {
                            self.pos += 1;
                            let body = self.definitions(Some((&name, line)));
                            nodes.push(Node::Block(Block { name, line, body }));
                        }
                        Some((Tok::Eq, _)) => {
                            self.pos += 1;
                            if let Some(values) = self.values(&name, line) {
                                nodes.push(Node::Stmt(Statement { name, values, line }));
                            }
                        }
                        Some((t, l)) => {
                            self.err(
                                l,
                                format!(
                                    "expected `=` or `{{` after {name}, found {}",
                                    t.describe()
                                ),
                            );
                            self.recover();
                        }
                        None => {
                            self.err(line, format!("expected `=` or `{{` after {name}"));
                        }
                    }
                }
                t => {
                    self.pos += 1;
                    self.err(line, format!("expected a name, found {}", t.describe()));
                    self.recover();
                }
            }
        }
    }

    /// `value (, value)* ;` after the `=`.
    fn values(&mut self, name: &str, line: u32) -> Option<Vec<String>> {
        let mut values = Vec::new();
        let mut want_value = true;
        loop {
            let Some((tok, l)) = self.peek().cloned() else {
                self.err(
                    line,
                    format!("{name}: missing `;` at the end of the statement"),
                );
                return None;
            };
            match tok {
                Tok::Semi => {
                    self.pos += 1;
                    if want_value && !values.is_empty() {
                        self.err(l, format!("{name}: a value is missing after `,`"));
                        return None;
                    }
                    return Some(values);
                }
                Tok::Word(w) if want_value => {
                    self.pos += 1;
                    if let Some(problem) = bare_value_problem(&w) {
                        self.err(l, format!("{name}: {problem}"));
                        self.recover();
                        return None;
                    }
                    values.push(w);
                    want_value = false;
                }
                Tok::Quoted(q) if want_value => {
                    self.pos += 1;
                    values.push(q);
                    want_value = false;
                }
                Tok::Comma if !want_value => {
                    self.pos += 1;
                    want_value = true;
                }
                Tok::RBrace | Tok::LBrace => {
                    // Most likely a forgotten `;`: report it on the statement's line.
                    self.err(
                        line,
                        format!(
                            "{name}: missing `;` at the end of the statement (found {})",
                            tok.describe()
                        ),
                    );
                    if tok == Tok::LBrace {
                        self.recover();
                    }
                    return None;
                }
                t => {
                    self.pos += 1;
                    let what = if want_value { "a value" } else { "`,` or `;`" };
                    self.err(
                        l,
                        format!("{name}: expected {what}, found {}", t.describe()),
                    );
                    self.recover();
                    return None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stmt(nodes: &[Node], i: usize) -> &Statement {
        match &nodes[i] {
            Node::Stmt(s) => s,
            n => panic!("not a statement: {n:?}"),
        }
    }

    fn block(nodes: &[Node], i: usize) -> &Block {
        match &nodes[i] {
            Node::Block(b) => b,
            n => panic!("not a block: {n:?}"),
        }
    }

    #[test]
    fn comments_quotes_nested_blocks_and_lines() {
        let text = "# a comment\n\
                    EXPORT { # trailing comment\n\
                      Export_Id = 7;\n\
                      Path = \"/a b\"; Pseudo = '/x#y';\n\
                      Protocols = 3, 4 ;\n\
                      FSAL {\n\
                        Name = STRATA;\n\
                        Quoted = \"say \\\"hi\\\"\\n\";\n\
                      }\n\
                      Empty = ;\n\
                    }\n";
        let nodes = parse(text).unwrap();
        assert_eq!(nodes.len(), 1);
        let e = block(&nodes, 0);
        assert_eq!((e.name.as_str(), e.line), ("EXPORT", 2));
        assert_eq!(stmt(&e.body, 0).values, vec!["7"]);
        assert_eq!(stmt(&e.body, 0).line, 3);
        assert_eq!(stmt(&e.body, 1).values, vec!["/a b"]);
        assert_eq!(stmt(&e.body, 2).values, vec!["/x#y"]);
        assert_eq!(stmt(&e.body, 2).line, 4);
        assert_eq!(stmt(&e.body, 3).values, vec!["3", "4"]);
        let f = block(&e.body, 4);
        assert_eq!((f.name.as_str(), f.line), ("FSAL", 6));
        assert_eq!(stmt(&f.body, 0).values, vec!["STRATA"]);
        assert_eq!(stmt(&f.body, 1).values, vec!["say \"hi\"\n"]);
        assert_eq!(stmt(&e.body, 5).values, Vec::<String>::new());
        assert_eq!(stmt(&e.body, 5).line, 10);
    }

    #[test]
    fn multi_line_string_counts_lines() {
        let nodes = parse("A {\n x = \"one\ntwo\";\n y = 1;\n}\n").unwrap();
        let b = block(&nodes, 0);
        assert_eq!(stmt(&b.body, 0).line, 2);
        assert_eq!(stmt(&b.body, 1).line, 4);
    }

    #[test]
    fn missing_semicolon_is_reported_on_its_line() {
        let errs = parse("STRATA {\n  Data_Dir = \"/x\"\n}\n").unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].line, 2);
        assert!(errs[0].reason.contains("missing `;`"), "{errs:?}");
    }

    #[test]
    fn unclosed_block_and_stray_brace() {
        let errs = parse("A {\n x = 1;\n").unwrap_err();
        assert!(errs[0].reason.contains("line 1 is not closed"), "{errs:?}");
        let errs = parse("A { x = 1; }\n}\n").unwrap_err();
        assert_eq!(errs[0].line, 2);
        assert!(errs[0].reason.contains("without a block"), "{errs:?}");
    }

    #[test]
    fn unterminated_strings() {
        let errs = parse("A {\n x = \"abc;\n}\n").unwrap_err();
        assert_eq!(errs[0].line, 2);
        assert!(errs[0].reason.contains("unterminated"), "{errs:?}");
        let errs = parse("A {\n x = 'abc;\n}\n").unwrap_err();
        assert!(
            errs.iter().any(|e| e.reason.contains("unterminated")),
            "{errs:?}"
        );
    }

    #[test]
    fn bare_values_ganesha_would_split() {
        let errs = parse("S {\n a = 1;\n b = 4M;\n c = -flat.vmdk;\n}\n").unwrap_err();
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert_eq!(errs[0].line, 3);
        assert!(errs[0].reason.contains("quote it: \"4M\""), "{errs:?}");
        assert_eq!(errs[1].line, 4);
        // Things Ganesha reads as one token stay fine.
        parse("S { a = 0x1F; b = 9P; c = 10.0.0.1; d = -1; e = /var/lib/x; f = No_Root_Squash; }")
            .unwrap();
    }

    #[test]
    fn includes_are_unsupported() {
        let errs = parse("%include \"/etc/other.conf\"\nA { x = 1; }\n").unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].line, 1);
        assert!(errs[0].reason.contains("%include"), "{errs:?}");
    }

    #[test]
    fn recovery_reports_several_errors() {
        let errs = parse("A {\n x = = 1;\n y = 2;\n z 3;\n}\n").unwrap_err();
        let lines: Vec<u32> = errs.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![2, 4], "{errs:?}");
    }

    #[test]
    fn empty_file_is_an_error() {
        assert!(parse("# only a comment\n").is_err());
    }
}

//! Bounds a policy set's text must keep before Cedar parses it: its size, how many
//! policies it holds, how deep its brackets nest, and how deep its expressions can be.
//!
//! Cedar's parser, validator, evaluator, and even the dropping of a parsed set recurse
//! along the expression tree, so a set nested deep enough overflows the thread's stack,
//! which aborts the process (no unwinding, no 400). The scan here reads tokens only —
//! no tree, no recursion, one pass — and gives an upper bound of the tree's depth, so
//! text that passes it parses and evaluates within `policy::CEDAR_STACK_BYTES`.
//!
//! The depth estimate is conservative: every bracket is a level, and so is every
//! operator, `.` (attribute or method), `if`, `then` or `else` between the same two
//! brackets and commas (a chain `a && b && c` is a tree as deep as it is long).

/// The longest policy set text writ accepts, in bytes.
pub const POLICY_SET_BYTES_MAX: usize = 32 * 1024;

/// The most policies one set may hold (every tool call evaluates them all).
pub const POLICY_SET_POLICIES_MAX: usize = 256;

/// The deepest nesting of brackets (`(`, `[`, `{`) a policy set may have, the policy's
/// own `permit(...)` and `when { ... }` included.
pub const POLICY_NESTING_DEPTH_MAX: usize = 16;

/// The deepest expression a policy may hold, as estimated by [`check`]: brackets, and
/// operators, `.`, `if`, `then`, `else` chained between the same brackets, each count one.
pub const POLICY_EXPRESSION_DEPTH_MAX: usize = 160;

/// Why a policy set's text is over a bound: a sentence naming the bound.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OverBound {
    /// More bytes than [`POLICY_SET_BYTES_MAX`].
    #[error(
        "the policy set is {0} bytes; at most {POLICY_SET_BYTES_MAX} are accepted (policy_set_bytes_max)"
    )]
    Bytes(usize),
    /// More policies than [`POLICY_SET_POLICIES_MAX`].
    #[error(
        "the policy set holds more than {POLICY_SET_POLICIES_MAX} policies (policy_set_policies_max); merge policies or move conditions into sets"
    )]
    Policies,
    /// Brackets nested deeper than [`POLICY_NESTING_DEPTH_MAX`].
    #[error(
        "brackets nest more than {POLICY_NESTING_DEPTH_MAX} deep at line {line} (policy_nesting_depth_max); remove redundant brackets"
    )]
    Nesting {
        /// Where the bracket that went too deep opened.
        line: usize,
    },
    /// An expression deeper than [`POLICY_EXPRESSION_DEPTH_MAX`].
    #[error(
        "an expression is more than {POLICY_EXPRESSION_DEPTH_MAX} levels deep at line {line} (policy_expression_depth_max: each bracket and each operator, `.`, `if`, `then` or `else` chained between the same brackets is a level); write long alternatives as a set, `[\"a\", \"b\"].contains(resource.name)`, or split the policy"
    )]
    Expression {
        /// Where the estimate went over.
        line: usize,
    },
}

/// What the scan knows of one open bracket (or of the policy's top level).
#[derive(Debug, Default, Clone, Copy)]
struct Frame {
    /// Chain tokens in the current comma-separated segment.
    chain: usize,
    /// The deepest closed bracket in the current segment.
    child: usize,
}

impl Frame {
    /// The segment's depth so far: its chain, its deepest child, and itself.
    fn depth(self) -> usize {
        self.chain + self.child + 1
    }
}

/// The scan's state: open brackets (the first frame is the top level), the line.
struct Scan {
    frames: Vec<Frame>,
    line: usize,
    policies: usize,
}

impl Scan {
    /// A lower bound of the final estimate, from what is open now: the path of open
    /// brackets down to each frame, plus that frame's segment.
    fn estimate(&self) -> usize {
        let mut above = 0;
        let mut deepest = 0;
        for frame in &self.frames {
            deepest = deepest.max(above + frame.depth());
            above += frame.chain + 2;
        }
        deepest
    }

    fn checked(&self) -> Result<(), OverBound> {
        match self.estimate() > POLICY_EXPRESSION_DEPTH_MAX {
            true => Err(OverBound::Expression { line: self.line }),
            false => Ok(()),
        }
    }

    fn chain(&mut self) -> Result<(), OverBound> {
        if let Some(top) = self.frames.last_mut() {
            top.chain += 1;
        }
        self.checked()
    }

    fn open(&mut self) -> Result<(), OverBound> {
        // The top level is not a bracket.
        if self.frames.len() > POLICY_NESTING_DEPTH_MAX {
            return Err(OverBound::Nesting { line: self.line });
        }
        self.frames.push(Frame::default());
        self.checked()
    }

    fn close(&mut self) -> Result<(), OverBound> {
        // An unmatched closing bracket is Cedar's parse error to report.
        if self.frames.len() > 1
            && let Some(closed) = self.frames.pop()
            && let Some(parent) = self.frames.last_mut()
        {
            parent.child = parent.child.max(closed.depth() + 1);
        }
        self.checked()
    }

    fn separate(&mut self) {
        if let Some(top) = self.frames.last_mut() {
            *top = Frame::default();
        }
    }

    fn end_policy(&mut self) -> Result<(), OverBound> {
        if self.frames.len() == 1 {
            self.policies += 1;
            if self.policies > POLICY_SET_POLICIES_MAX {
                return Err(OverBound::Policies);
            }
        }
        self.separate();
        Ok(())
    }
}

const CHAIN_WORDS: [&str; 7] = ["if", "then", "else", "in", "has", "like", "is"];

/// Checks a policy set's text against the bounds, in one pass over its bytes.
pub fn check(text: &str) -> Result<(), OverBound> {
    if text.len() > POLICY_SET_BYTES_MAX {
        return Err(OverBound::Bytes(text.len()));
    }
    let mut scan = Scan {
        frames: vec![Frame::default()],
        line: 1,
        policies: 0,
    };
    let bytes = text.as_bytes();
    let mut at = 0;
    while let Some(&byte) = bytes.get(at) {
        at += 1;
        match byte {
            b'\n' => scan.line += 1,
            b'"' => at = past_string(bytes, at, &mut scan.line),
            b'/' if bytes.get(at) == Some(&b'/') => {
                while bytes.get(at).is_some_and(|b| *b != b'\n') {
                    at += 1;
                }
            }
            b'(' | b'[' | b'{' => scan.open()?,
            b')' | b']' | b'}' => scan.close()?,
            b',' => scan.separate(),
            b';' => scan.end_policy()?,
            b'&' | b'|' | b'=' | b'<' | b'>' => {
                // Two-character operators count once.
                if bytes
                    .get(at)
                    .is_some_and(|b| matches!(b, b'&' | b'|' | b'='))
                {
                    at += 1;
                }
                scan.chain()?;
            }
            b'!' | b'+' | b'-' | b'*' | b'/' | b'%' | b'.' => scan.chain()?,
            b if b.is_ascii_alphabetic() || b == b'_' => {
                let start = at - 1;
                while bytes
                    .get(at)
                    .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_')
                {
                    at += 1;
                }
                if CHAIN_WORDS.contains(&&text[start..at]) {
                    scan.chain()?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// The index just past the string literal whose opening quote is before `at`.
fn past_string(bytes: &[u8], mut at: usize, line: &mut usize) -> usize {
    while let Some(&byte) = bytes.get(at) {
        at += 1;
        match byte {
            b'\\' => at += 1,
            b'"' => return at,
            b'\n' => *line += 1,
            _ => {}
        }
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parens(depth: usize) -> String {
        format!(
            "permit(principal, action, resource) when {{ {}true{} }};",
            "(".repeat(depth),
            ")".repeat(depth)
        )
    }

    #[test]
    fn real_policies_pass() {
        let text = r#"
            // Files, read only.
            @id("files") @critical
            permit(principal == Agent::"a1", action == Action::"call_tool", resource)
            when { resource.server == "srv_files" && context.scopes.contains("files:read")
                   && (context.agent_type == "supervised" || context.delegation_depth < 2) }
            unless { ["rm", "shred", "wipe \"all\" ;(("].contains(resource.name) };
        "#;
        assert_eq!(check(text), Ok(()));
    }

    #[test]
    fn brackets_nest_to_the_bound_and_not_past_it() {
        // `permit(` and `when {` are two of the levels.
        assert_eq!(check(&parens(POLICY_NESTING_DEPTH_MAX - 1)), Ok(()));
        assert_eq!(
            check(&parens(POLICY_NESTING_DEPTH_MAX)),
            Err(OverBound::Nesting { line: 1 })
        );
    }

    #[test]
    fn brackets_in_strings_and_comments_do_not_count() {
        let text = format!(
            "// {}\npermit(principal, action, resource) when {{ resource.name == \"{}\" }};",
            "(".repeat(500),
            "[".repeat(500)
        );
        assert_eq!(check(&text), Ok(()));
    }

    #[test]
    fn a_long_chain_is_as_deep_as_it_is_long() {
        let chain = |n: usize| {
            format!(
                "permit(principal, action, resource) when {{ true{} }};",
                " && true".repeat(n)
            )
        };
        // The top level (two) and its segment (one) hold the `when {` (two) and its
        // segment (one, the first `true`): the chain itself counts one per `&&`.
        assert_eq!(check(&chain(POLICY_EXPRESSION_DEPTH_MAX - 3)), Ok(()));
        assert_eq!(
            check(&chain(POLICY_EXPRESSION_DEPTH_MAX - 2)),
            Err(OverBound::Expression { line: 1 })
        );
    }

    #[test]
    fn the_line_of_the_excess_is_named() {
        let text = format!(
            "permit(principal, action, resource);\n\npermit(principal, action, resource) when {{ {} }};",
            "if true then ".repeat(100)
        );
        assert_eq!(check(&text), Err(OverBound::Expression { line: 3 }));
    }

    #[test]
    fn size_and_count_are_bounded() {
        let one = "permit(principal, action, resource);";
        assert_eq!(check(&one.repeat(POLICY_SET_POLICIES_MAX)), Ok(()));
        assert_eq!(
            check(&one.repeat(POLICY_SET_POLICIES_MAX + 1)),
            Err(OverBound::Policies)
        );
        let long = format!("{one}{}", " ".repeat(POLICY_SET_BYTES_MAX));
        assert_eq!(check(&long), Err(OverBound::Bytes(long.len())));
    }
}

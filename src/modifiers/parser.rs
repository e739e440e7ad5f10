//! Lexer and Pratt parser for the expr-lang subset used by `scalingModifiers.formula`.
//!
//! Precedences, associativity and the few odd rules are expr-lang's own (`parser/parser.go`,
//! `parser/operator/operator.go`):
//!
//! | operators                          | precedence | notes                               |
//! |------------------------------------|-----------:|-------------------------------------|
//! | `a ? b : c`, `a ?: c`              |          0 | only at the top of an expression    |
//! | `\|\|`, `or`                       |         10 |                                     |
//! | `&&`, `and`                        |         15 |                                     |
//! | `== != < <= > >=`                  |         20 | `a < b < c` means `a < b && b < c`  |
//! | `+ -`                              |         30 |                                     |
//! | `not`, `!` (prefix)                |         50 | so `!a == b` is `(!a) == b`         |
//! | `* / %`                            |         60 |                                     |
//! | `-`, `+` (prefix)                  |         90 | so `-2 ** 2` is `-(2 ** 2)`         |
//! | `**`, `^`                          |        100 | right-associative                   |
//! | `??`                               |        500 | cannot be mixed with other binaries |
//!
//! Every recursion is bounded ([`MAX_NESTING`]) and every loop consumes a token, so no input
//! can make the parser overflow its stack or spin.

use super::formula::FormulaError;
use super::lexer::{Tok, Token, describe, lex, syntax};

/// Deepest nesting accepted, both for the parser's recursion and for the finished tree (which
/// bounds the recursion of the checker and the evaluator). Real formulas nest a handful deep.
pub(crate) const MAX_NESTING: u16 = 128;

/// The builtin functions a formula may call (expr-lang's numeric builtins).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Builtin {
    Abs,
    Ceil,
    Floor,
    Round,
    Min,
    Max,
    Float,
    Int,
}

impl Builtin {
    /// Every builtin, for error messages.
    pub(crate) const NAMES: &'static str = "abs, ceil, floor, round, min, max, float, int";

    fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "abs" => Self::Abs,
            "ceil" => Self::Ceil,
            "floor" => Self::Floor,
            "round" => Self::Round,
            "min" => Self::Min,
            "max" => Self::Max,
            "float" => Self::Float,
            "int" => Self::Int,
            _ => return None,
        })
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Abs => "abs",
            Self::Ceil => "ceil",
            Self::Floor => "floor",
            Self::Round => "round",
            Self::Min => "min",
            Self::Max => "max",
            Self::Float => "float",
            Self::Int => "int",
        }
    }
}

/// Prefix operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UnOp {
    /// `!` and `not`.
    Not,
    /// `-`.
    Neg,
    /// `+` (checks that its operand is a number, changes nothing).
    Pos,
}

/// Binary operators; the word forms (`and`, `or`) and `^` map onto the symbol forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BinOp {
    Or,
    And,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Coalesce,
}

impl BinOp {
    /// expr-lang's binding power (`parser/operator/operator.go`): higher binds tighter.
    fn precedence(self) -> u16 {
        match self {
            Self::Or => 10,
            Self::And => 15,
            Self::Eq | Self::Ne | Self::Lt | Self::Le | Self::Gt | Self::Ge => 20,
            Self::Add | Self::Sub => 30,
            Self::Mul | Self::Div | Self::Mod => 60,
            Self::Pow => 100,
            Self::Coalesce => 500,
        }
    }

    /// expr-lang chains these: `a < b <= c` is `a < b && b <= c` (but not `==`/`!=`).
    fn chains(self) -> bool {
        matches!(self, Self::Lt | Self::Le | Self::Gt | Self::Ge)
    }

    /// The operator as error messages print it.
    pub(crate) fn symbol(self) -> &'static str {
        match self {
            Self::Or => "||",
            Self::And => "&&",
            Self::Eq => "==",
            Self::Ne => "!=",
            Self::Lt => "<",
            Self::Le => "<=",
            Self::Gt => ">",
            Self::Ge => ">=",
            Self::Add => "+",
            Self::Sub => "-",
            Self::Mul => "*",
            Self::Div => "/",
            Self::Mod => "%",
            Self::Pow => "**",
            Self::Coalesce => "??",
        }
    }
}

/// A node of the syntax tree, with the 1-based column it starts at (for error messages) and
/// its height (bounded by [`MAX_NESTING`], so recursing over a tree is always safe).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub(crate) kind: Kind,
    pub(crate) column: usize,
    height: u16,
}

/// What a node is. Chained comparisons and `a ?: b` are desugared by the parser, so the
/// checker and the evaluator only see these.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Kind {
    /// An int literal.
    Int(i64),
    /// A float literal.
    Float(f64),
    /// `true` or `false`.
    Bool(bool),
    /// `nil`.
    Nil,
    /// A trigger name.
    Name(String),
    /// A prefix operator and its operand.
    Unary(UnOp, Box<Node>),
    /// A binary operator and its operands.
    Binary(BinOp, Box<Node>, Box<Node>),
    /// `cond ? then : else`.
    Cond(Box<Node>, Box<Node>, Box<Node>),
    /// A builtin call and its arguments.
    Call(Builtin, Vec<Node>),
}

impl Node {
    /// Builds a node, refusing one that would make the tree deeper than [`MAX_NESTING`]: a long
    /// left-associative chain (`1+1+1+…`) grows the tree without deepening the parser's own
    /// recursion, so the height is checked here, where every node is made.
    fn new(kind: Kind, column: usize) -> Result<Self, FormulaError> {
        let children: Box<dyn Iterator<Item = &Node>> = match &kind {
            Kind::Unary(_, a) => Box::new([&**a].into_iter()),
            Kind::Binary(_, a, b) => Box::new([&**a, &**b].into_iter()),
            Kind::Cond(a, b, c) => Box::new([&**a, &**b, &**c].into_iter()),
            Kind::Call(_, args) => Box::new(args.iter()),
            _ => Box::new(std::iter::empty()),
        };
        let height = 1 + children.map(|n| n.height).max().unwrap_or(0);
        if height > MAX_NESTING {
            return Err(FormulaError::TooDeep {
                column,
                max: MAX_NESTING,
            });
        }
        Ok(Self {
            kind,
            column,
            height,
        })
    }

    /// Calls `f` on every trigger name the tree mentions, in source order.
    pub(crate) fn for_each_name<'a>(&'a self, f: &mut impl FnMut(&'a str, usize)) {
        match &self.kind {
            Kind::Name(n) => f(n, self.column),
            Kind::Unary(_, a) => a.for_each_name(f),
            Kind::Binary(_, a, b) => {
                a.for_each_name(f);
                b.for_each_name(f);
            }
            Kind::Cond(a, b, c) => {
                a.for_each_name(f);
                b.for_each_name(f);
                c.for_each_name(f);
            }
            Kind::Call(_, args) => args.iter().for_each(|a| a.for_each_name(f)),
            Kind::Int(_) | Kind::Float(_) | Kind::Bool(_) | Kind::Nil => {}
        }
    }

    /// True when the tree uses `??` anywhere (KEDA then keeps a nil result instead of failing).
    pub(crate) fn uses_coalesce(&self) -> bool {
        match &self.kind {
            Kind::Binary(BinOp::Coalesce, _, _) => true,
            Kind::Unary(_, a) => a.uses_coalesce(),
            Kind::Binary(_, a, b) => a.uses_coalesce() || b.uses_coalesce(),
            Kind::Cond(a, b, c) => a.uses_coalesce() || b.uses_coalesce() || c.uses_coalesce(),
            Kind::Call(_, args) => args.iter().any(Node::uses_coalesce),
            Kind::Int(_) | Kind::Float(_) | Kind::Bool(_) | Kind::Nil | Kind::Name(_) => false,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Parser
// ---------------------------------------------------------------------------------------------

/// Parses a whole formula into its syntax tree.
pub(crate) fn parse(src: &str) -> Result<Node, FormulaError> {
    let mut p = Parser {
        tokens: lex(src)?,
        pos: 0,
        nesting: 0,
    };
    let node = p.expression(0)?;
    let t = p.peek();
    if t.tok != Tok::Eof {
        let what = if let Tok::Op(")") = t.tok {
            "')' without a matching '('".to_string()
        } else {
            describe(&t.tok)
        };
        return Err(syntax(
            t.column,
            format!("expected an operator or the end of the formula, found {what}"),
        ));
    }
    Ok(node)
}

/// The parser's state: the tokens, the cursor, and how deep `expression` currently recurses.
struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    nesting: u16,
}

/// What may start an operand, for "expected …" messages.
const OPERAND: &str =
    "an operand (a number, a trigger name, a function call, '(' or a prefix operator)";

impl Parser {
    /// The current token (Eof once the input is used up).
    fn peek(&self) -> &Token {
        // The lexer always ends the list with Eof, and `advance` never moves past it.
        &self.tokens[self.pos.min(self.tokens.len() - 1)]
    }

    /// Consumes and returns the current token; stays on Eof at the end.
    fn advance(&mut self) -> Token {
        let t = self.peek().clone();
        if self.pos < self.tokens.len() - 1 {
            self.pos += 1;
        }
        t
    }

    fn at_op(&self, op: &str) -> bool {
        matches!(self.peek().tok, Tok::Op(o) if o == op)
    }

    fn expect_op(&mut self, op: &str, context: &str) -> Result<(), FormulaError> {
        if self.at_op(op) {
            self.advance();
            return Ok(());
        }
        let t = self.peek();
        Err(syntax(
            t.column,
            format!("expected '{op}' {context}, found {}", describe(&t.tok)),
        ))
    }

    /// The binary operator at the cursor, if the current token is one.
    fn binary_op(&self) -> Option<BinOp> {
        let Tok::Op(op) = self.peek().tok else {
            return None;
        };
        Some(match op {
            "||" | "or" => BinOp::Or,
            "&&" | "and" => BinOp::And,
            "==" => BinOp::Eq,
            "!=" => BinOp::Ne,
            "<" => BinOp::Lt,
            "<=" => BinOp::Le,
            ">" => BinOp::Gt,
            ">=" => BinOp::Ge,
            "+" => BinOp::Add,
            "-" => BinOp::Sub,
            "*" => BinOp::Mul,
            "/" => BinOp::Div,
            "%" => BinOp::Mod,
            "**" | "^" => BinOp::Pow,
            "??" => BinOp::Coalesce,
            _ => return None,
        })
    }

    /// expr-lang's `parseExpression`: precedence climbing over binary operators, then the
    /// ternary when at the top (`min_prec == 0`).
    fn expression(&mut self, min_prec: u16) -> Result<Node, FormulaError> {
        self.nesting += 1;
        if self.nesting > MAX_NESTING {
            return Err(FormulaError::TooDeep {
                column: self.peek().column,
                max: MAX_NESTING,
            });
        }
        let mut left = self.primary()?;
        let mut previous: Option<BinOp> = None;
        while let Some(op) = self.binary_op() {
            if op.precedence() < min_prec {
                break;
            }
            let at = self.advance();
            if previous == Some(BinOp::Coalesce) && op != BinOp::Coalesce {
                return Err(syntax(
                    at.column,
                    format!(
                        "operator ({}) and coalesce expressions (??) cannot be mixed; wrap either in parentheses",
                        op.symbol()
                    ),
                ));
            }
            left = if op.chains() {
                self.comparison(left, op, at.column)?
            } else {
                // Left-associative operators bind their right side one level tighter.
                let next = if op == BinOp::Pow {
                    op.precedence()
                } else {
                    op.precedence() + 1
                };
                let right = self.expression(next)?;
                Node::new(Kind::Binary(op, Box::new(left), Box::new(right)), at.column)?
            };
            previous = Some(op);
        }
        if min_prec == 0 {
            left = self.conditional(left)?;
        }
        self.nesting -= 1;
        Ok(left)
    }

    /// `a < b <= c` → `a < b && b <= c`, as expr-lang's `parseComparison`.
    fn comparison(&mut self, left: Node, op: BinOp, column: usize) -> Result<Node, FormulaError> {
        let mut right = self.expression(op.precedence() + 1)?;
        let mut root = Node::new(
            Kind::Binary(op, Box::new(left), Box::new(right.clone())),
            column,
        )?;
        while let Some(op) = self.binary_op().filter(|next| next.chains()) {
            let column = self.advance().column;
            let left = right;
            right = self.expression(op.precedence() + 1)?;
            let cmp = Node::new(
                Kind::Binary(op, Box::new(left), Box::new(right.clone())),
                column,
            )?;
            root = Node::new(
                Kind::Binary(BinOp::And, Box::new(root), Box::new(cmp)),
                column,
            )?;
        }
        Ok(root)
    }

    /// `cond ? a : b` (right-nested: `a ? b : c ? d : e`) and the short `cond ?: b`.
    fn conditional(&mut self, mut node: Node) -> Result<Node, FormulaError> {
        while self.at_op("?") {
            let q = self.advance();
            let (then, other) = if self.at_op(":") {
                self.advance();
                (node.clone(), self.expression(0)?)
            } else {
                let then = self.expression(0)?;
                self.expect_op(":", &format!("for the '?' at column {}", q.column))?;
                (then, self.expression(0)?)
            };
            let column = node.column;
            node = Node::new(
                Kind::Cond(Box::new(node), Box::new(then), Box::new(other)),
                column,
            )?;
        }
        Ok(node)
    }

    /// An operand: a literal, a name, a call, a parenthesised expression, or a prefix operator
    /// applied to an operand parsed at that operator's precedence (expr-lang's `parsePrimary`).
    fn primary(&mut self) -> Result<Node, FormulaError> {
        let t = self.advance();
        let column = t.column;
        let unary = |op: UnOp, p: &mut Self, prec: u16| -> Result<Node, FormulaError> {
            let operand = p.expression(prec)?;
            Node::new(Kind::Unary(op, Box::new(operand)), column)
        };
        match t.tok {
            Tok::Op("!" | "not") => unary(UnOp::Not, self, 50),
            Tok::Op("-") => unary(UnOp::Neg, self, 90),
            Tok::Op("+") => unary(UnOp::Pos, self, 90),
            Tok::Op("(") => {
                let inner = self.expression(0)?;
                self.expect_op(")", &format!("to close the '(' at column {column}"))?;
                Ok(inner)
            }
            Tok::Int(i) => Node::new(Kind::Int(i), column),
            Tok::Float(f) => Node::new(Kind::Float(f), column),
            Tok::Ident(name) => match name.as_str() {
                "true" => Node::new(Kind::Bool(true), column),
                "false" => Node::new(Kind::Bool(false), column),
                "nil" => Node::new(Kind::Nil, column),
                _ if self.at_op("(") => self.call(name, column),
                _ => Node::new(Kind::Name(name), column),
            },
            other => Err(syntax(
                column,
                format!("expected {OPERAND}, found {}", describe(&other)),
            )),
        }
    }

    /// `name(arg, …)`: only the builtins can be called; arity is checked by the checker.
    fn call(&mut self, name: String, column: usize) -> Result<Node, FormulaError> {
        let Some(builtin) = Builtin::from_name(&name) else {
            return Err(FormulaError::UnknownFunction { name, column });
        };
        self.advance(); // '('
        let mut args = Vec::new();
        if !self.at_op(")") {
            loop {
                args.push(self.expression(0)?);
                if self.at_op(",") {
                    self.advance();
                    continue;
                }
                let ctx = format!("or ',' in the call to {name} at column {column}");
                self.expect_op(")", &ctx)?;
                break;
            }
        } else {
            self.advance();
        }
        Node::new(Kind::Call(builtin, args), column)
    }
}

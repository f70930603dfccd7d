//! Image builds for berth (Docker's classic builder, `POST /build`): the pure parts that
//! need no engine. The Dockerfile parser ([`dockerfile`]) turns the text into stages and
//! steps with the words as written; [`lex`] expands `$VAR` words as Docker's shell lexer
//! does when a step is evaluated; [`ignore`] matches `.dockerignore` patterns; and
//! [`context`] selects a COPY/ADD step's sources in an unpacked build context (never
//! outside it) and writes them as the tar stream the engine extracts into the step's
//! container, with the checksum that keys the layer cache. The engine runs the steps.

pub mod context;
pub mod dockerfile;
pub mod ignore;
pub mod lex;

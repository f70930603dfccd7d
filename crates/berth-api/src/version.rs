//! Docker API versions. Requests name one in their path prefix (`/v1.41/...`); the
//! handlers see it as an [`ApiVersion`] request extension (see `middleware.rs`).

use std::fmt;
use std::str::FromStr;

use crate::{API_VERSION, MIN_API_VERSION};

/// A Docker API version, `major.minor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ApiVersion {
    pub major: u32,
    pub minor: u32,
}

impl ApiVersion {
    pub const fn new(major: u32, minor: u32) -> ApiVersion {
        ApiVersion { major, minor }
    }

    /// The version berth speaks ([`API_VERSION`]); requests without a prefix get it.
    pub fn max() -> ApiVersion {
        API_VERSION
            .parse()
            .expect("API_VERSION is a valid version literal")
    }

    /// The oldest version berth accepts ([`MIN_API_VERSION`]).
    pub fn min() -> ApiVersion {
        MIN_API_VERSION
            .parse()
            .expect("MIN_API_VERSION is a valid version literal")
    }
}

impl FromStr for ApiVersion {
    type Err = ();

    /// `1.47`; a missing minor is 0 (Docker compares versions component by component).
    fn from_str(s: &str) -> Result<ApiVersion, ()> {
        let mut parts = s.split('.');
        let major = parts.next().ok_or(())?.parse().map_err(|_| ())?;
        let minor = match parts.next() {
            Some(m) => m.parse().map_err(|_| ())?,
            None => 0,
        };
        if parts.any(|p| p.parse::<u32>().is_err()) {
            return Err(());
        }
        Ok(ApiVersion { major, minor })
    }
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_numerically() {
        let v = |s: &str| s.parse::<ApiVersion>().expect("valid");
        assert!(v("1.9") < v("1.10"));
        assert!(v("1.47") > v("1.24"));
        assert_eq!(v("1"), ApiVersion::new(1, 0));
        assert!("1.x".parse::<ApiVersion>().is_err());
        assert!("".parse::<ApiVersion>().is_err());
        assert_eq!(ApiVersion::max().to_string(), API_VERSION);
        assert_eq!(ApiVersion::min().to_string(), MIN_API_VERSION);
    }
}

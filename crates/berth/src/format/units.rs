//! Sizes, durations and times worded as the docker CLI words them (go-units and Go's
//! `fmt`/`time` packages), so berth's tables read like Docker's.

use chrono::{DateTime, FixedOffset, TimeZone, Utc};

const DECIMAL_UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
const BINARY_UNITS: [&str; 9] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"];

fn size_and_unit(mut size: f64, base: f64, units: &[&'static str]) -> (f64, &'static str) {
    let mut i = 0;
    while size >= base && i < units.len() - 1 {
        size /= base;
        i += 1;
    }
    (size, units[i])
}

/// go-units `HumanSizeWithPrecision`: decimal units, `precision` significant digits
/// (`4.3MB`, `1.23GB`, `0B`).
pub fn human_size_with_precision(size: f64, precision: usize) -> String {
    let (s, unit) = size_and_unit(size, 1000.0, &DECIMAL_UNITS);
    format!("{}{unit}", go_g(s, precision))
}

/// go-units `HumanSize` (four significant digits).
pub fn human_size(size: f64) -> String {
    human_size_with_precision(size, 4)
}

/// go-units `BytesSize`: binary units, four significant digits (`23.47GiB`).
pub fn bytes_size(size: f64) -> String {
    let (s, unit) = size_and_unit(size, 1024.0, &BINARY_UNITS);
    format!("{}{unit}", go_g(s, 4))
}

/// Go's `fmt.Sprintf("%.*g", prec, x)`: `prec` significant digits, trailing zeros
/// dropped, exponent form when the exponent is < -4 or >= the precision.
pub fn go_g(x: f64, prec: usize) -> String {
    if !x.is_finite() {
        return if x.is_nan() {
            "NaN".into()
        } else if x > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    let prec = prec.max(1);
    let neg = x.is_sign_negative() && x != 0.0;
    // Rust rounds the exact binary value to `prec` digits, as Go's strconv does.
    let e = format!("{:.*e}", prec - 1, x.abs());
    let (mantissa, exp) = e.split_once('e').unwrap_or((e.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let mut digits: Vec<u8> = mantissa.bytes().filter(u8::is_ascii_digit).collect();
    while digits.last() == Some(&b'0') {
        digits.pop();
    }
    let nd = digits.len() as i32;
    let dp = if nd == 0 { 0 } else { exp + 1 };
    let mut prec = prec as i32;
    let mut eprec = prec;
    if eprec > nd && nd >= dp {
        eprec = nd;
    }
    let x_exp = dp - 1;
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    let digit = |i: i32| -> char {
        if i >= 0 && i < nd {
            digits[i as usize] as char
        } else {
            '0'
        }
    };
    if nd > 0 && (x_exp < -4 || x_exp >= eprec) {
        if prec > nd {
            prec = nd;
        }
        out.push(digit(0));
        if prec > 1 {
            out.push('.');
            for i in 1..prec {
                out.push(digit(i));
            }
        }
        let sign = if x_exp < 0 { '-' } else { '+' };
        out.push_str(&format!("e{sign}{:02}", x_exp.abs()));
        return out;
    }
    if prec > dp {
        prec = nd;
    }
    let frac = (prec - dp).max(0);
    if dp > 0 {
        for i in 0..dp {
            out.push(digit(i));
        }
    } else {
        out.push('0');
    }
    if frac > 0 {
        out.push('.');
        for i in 0..frac {
            out.push(digit(dp + i));
        }
    }
    out
}

/// Go's `%v` of a float64: shortest digits, exponent form when the exponent is < -4 or
/// >= 6 (`1.5`, `4.3e+06`).
pub fn go_float(x: f64) -> String {
    if !x.is_finite() {
        return go_g(x, 1);
    }
    let s = format!("{:e}", x.abs());
    let (m, e) = s.split_once('e').unwrap_or((s.as_str(), "0"));
    let exp: i32 = e.parse().unwrap_or(0);
    let digits: Vec<u8> = m.bytes().filter(u8::is_ascii_digit).collect();
    let mut out = String::new();
    if x.is_sign_negative() && x != 0.0 {
        out.push('-');
    }
    if x == 0.0 {
        out.push('0');
        return out;
    }
    let nd = digits.len() as i32;
    let dp = exp + 1;
    let digit = |i: i32| {
        if i >= 0 && i < nd {
            digits[i as usize] as char
        } else {
            '0'
        }
    };
    if !(-4..6).contains(&exp) {
        out.push(digit(0));
        if nd > 1 {
            out.push('.');
            for i in 1..nd {
                out.push(digit(i));
            }
        }
        let sign = if exp < 0 { '-' } else { '+' };
        out.push_str(&format!("e{sign}{:02}", exp.abs()));
        return out;
    }
    if dp > 0 {
        for i in 0..dp {
            out.push(digit(i));
        }
    } else {
        out.push('0');
    }
    let frac = (nd - dp).max(0);
    if frac > 0 {
        out.push('.');
        for i in 0..frac {
            out.push(digit(dp + i));
        }
    }
    out
}

/// go-units `HumanDuration`: "Less than a second", "About a minute", "2 hours", …
pub fn human_duration(d: chrono::Duration) -> String {
    let nanos = d
        .num_nanoseconds()
        .map(|n| n as f64)
        .unwrap_or(d.num_milliseconds() as f64 * 1e6);
    let seconds_f = nanos / 1e9;
    let seconds = seconds_f.trunc() as i64;
    if seconds < 1 {
        return "Less than a second".into();
    }
    if seconds == 1 {
        return "1 second".into();
    }
    if seconds < 60 {
        return format!("{seconds} seconds");
    }
    let minutes = (seconds_f / 60.0).trunc() as i64;
    if minutes == 1 {
        return "About a minute".into();
    }
    if minutes < 60 {
        return format!("{minutes} minutes");
    }
    let hours_f = seconds_f / 3600.0;
    let hours = hours_f.round() as i64;
    if hours == 1 {
        return "About an hour".into();
    }
    if hours < 48 {
        return format!("{hours} hours");
    }
    if hours < 24 * 7 * 2 {
        return format!("{} days", hours / 24);
    }
    if hours < 24 * 30 * 2 {
        return format!("{} weeks", hours / 24 / 7);
    }
    if hours < 24 * 365 * 2 {
        return format!("{} months", hours / 24 / 30);
    }
    format!("{} years", (hours_f.trunc() as i64) / 24 / 365)
}

/// `"2 hours ago"` for a Unix time, as docker's `CreatedSince`.
pub fn since(unix: i64, now: DateTime<Utc>) -> String {
    let then = Utc.timestamp_opt(unix, 0).single().unwrap_or(now);
    format!("{} ago", human_duration(now - then))
}

/// A Unix time in the local zone, with the zone's abbreviation ("UTC", "CET").
pub fn local_time(unix: i64) -> (DateTime<FixedOffset>, String) {
    let utc = Utc.timestamp_opt(unix, 0).single().unwrap_or_default();
    match local_offset(unix) {
        Some((offset_secs, abbrev)) => {
            let off = FixedOffset::east_opt(offset_secs).unwrap_or_else(utc_offset);
            (utc.with_timezone(&off), abbrev)
        }
        None => (utc.with_timezone(&utc_offset()), "UTC".to_string()),
    }
}

fn utc_offset() -> FixedOffset {
    FixedOffset::east_opt(0).unwrap_or_else(|| unreachable!("zero offset is valid"))
}

/// The local zone's offset and abbreviation at a time, from the C library (which reads
/// TZ and /etc/localtime as Go does).
fn local_offset(unix: i64) -> Option<(i32, String)> {
    #[allow(clippy::useless_conversion)] // time_t is 32 bits on some targets
    let t: libc::time_t = unix.try_into().ok()?;
    // SAFETY: an all-zero `tm` is a valid value of this plain C struct.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are to live, properly aligned values for the whole call;
    // localtime_r writes only to `tm`.
    let r = unsafe { libc::localtime_r(&t, &mut tm) };
    if r.is_null() {
        return None;
    }
    let abbrev = if tm.tm_zone.is_null() {
        String::new()
    } else {
        // SAFETY: glibc's tm_zone points to a NUL-terminated string in the C library's
        // zone data, valid for the life of the process.
        unsafe { std::ffi::CStr::from_ptr(tm.tm_zone) }
            .to_string_lossy()
            .into_owned()
    };
    let offset = i32::try_from(tm.tm_gmtoff).ok()?;
    Some((offset, abbrev))
}

/// Go's `time.Time.String()` in the local zone: `2026-11-26 09:35:11 +0000 UTC`.
pub fn go_time_string(unix: i64) -> String {
    let (t, abbrev) = local_time(unix);
    let abbrev = if abbrev.is_empty() {
        t.format("%z").to_string()
    } else {
        abbrev
    };
    format!("{} {abbrev}", t.format("%Y-%m-%d %H:%M:%S %z"))
}

/// RFC 3339 in the local zone as Go prints it (`Z` for UTC).
pub fn rfc3339_local(unix: i64) -> String {
    let (t, _) = local_time(unix);
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_match_go_units() {
        assert_eq!(human_size_with_precision(0.0, 3), "0B");
        assert_eq!(human_size_with_precision(999.0, 3), "999B");
        assert_eq!(human_size_with_precision(1000.0, 3), "1kB");
        assert_eq!(human_size_with_precision(4_300_000.0, 3), "4.3MB");
        assert_eq!(human_size_with_precision(4_312_345.0, 3), "4.31MB");
        assert_eq!(human_size_with_precision(1_234_567_890.0, 3), "1.23GB");
        assert_eq!(human_size_with_precision(12_345_678.0, 3), "12.3MB");
        assert_eq!(human_size_with_precision(123_456_789.0, 3), "123MB");
        // Go's %g switches to exponent form when rounding reaches the precision.
        assert_eq!(human_size_with_precision(999_600.0, 3), "1e+03kB");
        assert_eq!(human_size(4_312_345.0), "4.312MB");
        assert_eq!(human_size(1_200_000.0), "1.2MB");
        assert_eq!(human_size(0.0), "0B");
        assert_eq!(bytes_size(25_200_000_000.0), "23.47GiB");
        assert_eq!(bytes_size(1024.0), "1KiB");
    }

    #[test]
    fn go_g_formatting() {
        assert_eq!(go_g(4.0, 3), "4");
        assert_eq!(go_g(4.05, 3), "4.05");
        assert_eq!(go_g(100.0, 3), "100");
        assert_eq!(go_g(0.5, 3), "0.5");
        assert_eq!(go_g(0.00001234, 3), "1.23e-05");
        assert_eq!(go_g(-2.5, 3), "-2.5");
    }

    #[test]
    fn go_float_formatting() {
        assert_eq!(go_float(4300000.0), "4.3e+06");
        assert_eq!(go_float(123456789.0), "1.23456789e+08");
        assert_eq!(go_float(100000.0), "100000");
        assert_eq!(go_float(1.5), "1.5");
        assert_eq!(go_float(0.0001), "0.0001");
        assert_eq!(go_float(0.00001), "1e-05");
    }

    #[test]
    fn durations_match_go_units() {
        let s = chrono::Duration::seconds;
        assert_eq!(
            human_duration(chrono::Duration::milliseconds(300)),
            "Less than a second"
        );
        assert_eq!(human_duration(s(-5)), "Less than a second");
        assert_eq!(human_duration(s(1)), "1 second");
        assert_eq!(human_duration(s(59)), "59 seconds");
        assert_eq!(human_duration(s(60)), "About a minute");
        assert_eq!(human_duration(s(119)), "About a minute");
        assert_eq!(human_duration(s(120)), "2 minutes");
        assert_eq!(human_duration(s(3599)), "59 minutes");
        assert_eq!(human_duration(s(3600)), "About an hour");
        assert_eq!(human_duration(s(5399)), "About an hour");
        assert_eq!(human_duration(s(5400)), "2 hours");
        assert_eq!(human_duration(s(47 * 3600)), "47 hours");
        assert_eq!(human_duration(s(48 * 3600)), "2 days");
        assert_eq!(human_duration(s(14 * 24 * 3600)), "2 weeks");
        assert_eq!(human_duration(s(60 * 24 * 3600)), "2 months");
        assert_eq!(human_duration(s(2 * 365 * 24 * 3600)), "2 years");
    }

    #[test]
    fn since_words() {
        let now = Utc
            .timestamp_opt(1_800_000_000, 0)
            .single()
            .unwrap_or_default();
        assert_eq!(since(1_800_000_000 - 7200, now), "2 hours ago");
        assert_eq!(since(1_800_000_000 - 61, now), "About a minute ago");
    }
}

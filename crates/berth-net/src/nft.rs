//! STUB (local only)
use std::net::Ipv4Addr;
#[derive(Default)]
pub struct Ruleset {
    pub bridges: Vec<BridgeRules>,
    pub ports: Vec<PortRule>,
}
pub struct BridgeRules {
    pub bridge: String,
    pub subnet: ipnet::Ipv4Net,
    pub masquerade: bool,
    pub internal: bool,
    pub icc: bool,
}
pub enum Proto {
    Tcp,
    Udp,
}
pub struct PortRule {
    pub proto: Proto,
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub container_ip: Ipv4Addr,
    pub container_port: u16,
    pub bridge: String,
}
pub fn apply(_r: &Ruleset) -> crate::Result<()> {
    Err(crate::Error::internal("x", "stub"))
}
pub fn enable_ip_forward() -> crate::Result<bool> {
    Err(crate::Error::internal("x", "stub"))
}

//! Log-source routing for Windows: each Sigma `logsource` becomes channel + event-id conditions.
//! Routing is by channel, not provider: the Security log's "log cleared" (1102) is written by the
//! Eventlog provider, and provider routing would never show it to `service: security` rules.

use crate::SigmaError;

/// One acceptable (channel, event ids) pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alt {
    /// Lower-case channel; a trailing `*` matches any suffix; `None` is any channel.
    pub channel: Option<String>,
    /// Accepted event ids; empty means any.
    pub event_ids: Vec<u32>,
}

/// Where a rule applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Windows event logs, any of these.
    Windows(Vec<Alt>),
    /// Another product (Linux, network, web …); not applied to Windows events.
    Other(String),
}

const SYSMON: &str = "microsoft-windows-sysmon/operational";
const SECURITY: &str = "security";

fn alt(channel: &str, ids: &[u32]) -> Alt {
    Alt {
        channel: Some(channel.to_ascii_lowercase()),
        event_ids: ids.to_vec(),
    }
}

fn category(c: &str) -> Option<Vec<Alt>> {
    let s = |ids: &[u32]| vec![alt(SYSMON, ids)];
    Some(match c {
        "process_creation" => vec![alt(SYSMON, &[1]), alt(SECURITY, &[4688])],
        "file_change" => s(&[2]),
        "network_connection" => vec![alt(SYSMON, &[3])],
        "sysmon_status" => s(&[4, 16]),
        "process_termination" => vec![alt(SYSMON, &[5])],
        "driver_load" => s(&[6]),
        "image_load" => s(&[7]),
        "create_remote_thread" => s(&[8]),
        "raw_access_thread" => s(&[9]),
        "process_access" => s(&[10]),
        "file_event" => s(&[11]),
        "registry_add" | "registry_delete" => s(&[12]),
        "registry_set" => s(&[13]),
        "registry_rename" => s(&[14]),
        "registry_event" => s(&[12, 13, 14]),
        "create_stream_hash" => s(&[15]),
        "pipe_created" => s(&[17, 18]),
        "wmi_event" => s(&[19, 20, 21]),
        "dns_query" => s(&[22]),
        "file_delete" => s(&[23, 26]),
        "clipboard_capture" => s(&[24]),
        "process_tampering" => s(&[25]),
        "file_delete_detected" => s(&[26]),
        "file_block_executable" => s(&[27]),
        "file_block_shredding" => s(&[28]),
        "file_executable_detected" => s(&[29]),
        "sysmon_error" => s(&[255]),
        "ps_module" => vec![alt("microsoft-windows-powershell/operational", &[4103])],
        "ps_script" => vec![alt("microsoft-windows-powershell/operational", &[4104])],
        "ps_classic_start" => vec![alt("windows powershell", &[400])],
        "ps_classic_provider_start" => vec![alt("windows powershell", &[600])],
        "ps_classic_script" => vec![alt("windows powershell", &[800])],
        "dns" => vec![
            alt("microsoft-windows-dns-client/operational", &[]),
            alt("microsoft-windows-dns client events/operational", &[]),
        ],
        _ => return None,
    })
}

fn service(s: &str) -> Option<&'static [&'static str]> {
    Some(match s {
        "security" => &["security"],
        "system" => &["system"],
        "application" => &["application"],
        "sysmon" => &[SYSMON],
        "powershell" => &["microsoft-windows-powershell/operational"],
        "powershell-classic" => &["windows powershell"],
        "taskscheduler" => &["microsoft-windows-taskscheduler/operational"],
        "wmi" => &["microsoft-windows-wmi-activity/operational"],
        "windefend" => &["microsoft-windows-windows defender/operational"],
        "applocker" => &["microsoft-windows-applocker/*"],
        "bits-client" => &["microsoft-windows-bits-client/operational"],
        "codeintegrity-operational" => &["microsoft-windows-codeintegrity/operational"],
        "firewall-as" => &["microsoft-windows-windows firewall with advanced security/firewall"],
        "dns-server" => &["dns server"],
        "dns-server-analytic" => &["microsoft-windows-dns-server/analytical"],
        "dns-client" => &[
            "microsoft-windows-dns client events/operational",
            "microsoft-windows-dns-client/operational",
        ],
        "driver-framework" => &["microsoft-windows-driverframeworks-usermode/operational"],
        "ntlm" => &["microsoft-windows-ntlm/operational"],
        "printservice-admin" => &["microsoft-windows-printservice/admin"],
        "printservice-operational" => &["microsoft-windows-printservice/operational"],
        "terminalservices-localsessionmanager" => {
            &["microsoft-windows-terminalservices-localsessionmanager/operational"]
        }
        "smbclient-security" => &["microsoft-windows-smbclient/security"],
        "smbclient-connectivity" => &["microsoft-windows-smbclient/connectivity"],
        "capi2" => &["microsoft-windows-capi2/operational"],
        "certificateservicesclient-lifecycle-system" => {
            &["microsoft-windows-certificateservicesclient-lifecycle-system/operational"]
        }
        "openssh" => &["openssh/operational"],
        "ldap_debug" => &["microsoft-windows-ldap-client/debug"],
        "appxdeployment-server" => &["microsoft-windows-appxdeploymentserver/operational"],
        "appxpackaging-om" => &["microsoft-windows-appxpackaging/operational"],
        "lsa-server" => &["microsoft-windows-lsa/operational"],
        "security-mitigations" => &["microsoft-windows-security-mitigations/*"],
        "diagnosis-scripted" => &["microsoft-windows-diagnosis-scripted/operational"],
        "shell-core" => &["microsoft-windows-shell-core/operational"],
        "appmodel-runtime" => &["microsoft-windows-appmodel-runtime/admin"],
        "vhdmp" => &["microsoft-windows-vhdmp/operational"],
        "msexchange-management" => &["msexchange management"],
        "microsoft-servicebus-client" => &["microsoft-servicebus-client"],
        "hyper-v-worker" => &["microsoft-windows-hyper-v-worker-admin"],
        "kernel-shimengine" => &["microsoft-windows-kernel-shimengine/operational"],
        "iis-configuration" => &["microsoft-iis-configuration/operational"],
        "bitlocker" => &["microsoft-windows-bitlocker/bitlocker management"],
        "kernel-event-tracing" => &["microsoft-windows-kernel-eventtracing/admin"],
        "sysmon-operational" => &[SYSMON],
        _ => return None,
    })
}

/// Route a rule's logsource.
pub(crate) fn route(
    product: Option<&str>,
    cat: Option<&str>,
    svc: Option<&str>,
) -> Result<Route, SigmaError> {
    let product = product.map(str::to_ascii_lowercase);
    if product.as_deref().is_some_and(|p| p != "windows") {
        return Ok(Route::Other(product.unwrap_or_default()));
    }
    if product.is_none() && cat.is_none() && svc.is_none() {
        return Ok(Route::Other(String::new()));
    }
    let from_service = match svc {
        Some(s) => Some(service(s).ok_or_else(|| {
            SigmaError::Unsupported(format!(
                "Windows log source service `{s}` has no channel mapping"
            ))
        })?),
        None => None,
    };
    let alts = match cat {
        Some(c) => {
            let Some(mut alts) = category(c) else {
                if product.is_none() {
                    return Ok(Route::Other(format!("category {c}")));
                }
                return Err(SigmaError::Unsupported(format!(
                    "Windows log source category `{c}` has no channel mapping"
                )));
            };
            if let Some(chans) = from_service {
                alts.retain(|a| a.channel.as_deref().is_some_and(|ch| chans.contains(&ch)));
            }
            alts
        }
        None => match from_service {
            Some(chans) => chans.iter().map(|c| alt(c, &[])).collect(),
            None => vec![Alt {
                channel: None,
                event_ids: Vec::new(),
            }],
        },
    };
    Ok(Route::Windows(alts))
}

impl Alt {
    /// Whether an event of `channel` (lower-case) and `id` is in this alternative.
    pub fn accepts(&self, channel: &str, id: Option<u32>) -> bool {
        let chan_ok = match &self.channel {
            None => true,
            Some(c) => match c.strip_suffix('*') {
                Some(prefix) => channel.starts_with(prefix),
                None => c == channel,
            },
        };
        chan_ok && (self.event_ids.is_empty() || id.is_some_and(|i| self.event_ids.contains(&i)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_by_channel() {
        let Route::Windows(a) = route(Some("windows"), Some("process_creation"), None).unwrap()
        else {
            panic!()
        };
        assert!(a.iter().any(|x| x.accepts("security", Some(4688))));
        assert!(a.iter().any(|x| x.accepts(SYSMON, Some(1))));
        assert!(!a.iter().any(|x| x.accepts(SYSMON, Some(3))));
        let Route::Windows(a) = route(Some("windows"), None, Some("security")).unwrap() else {
            panic!()
        };
        assert!(
            a[0].accepts("security", Some(1102)),
            "log cleared routes by channel"
        );
        assert!(route(Some("windows"), None, Some("nonesuch")).is_err());
        assert_eq!(
            route(Some("linux"), Some("process_creation"), None).unwrap(),
            Route::Other("linux".into())
        );
    }
}

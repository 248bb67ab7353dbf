//! The web servers and databases OpsGuard watches (issue #10): the rules'
//! `[web]` and `[database]`, and any number more found by their labels
//! (`opsguard.role=web|database`, `opsguard.logs`, `opsguard.disk`), each
//! healed by its own incident.
//!
//! Pure: the shell lists the containers and hands their names and labels
//! in; [`Roster::build`] says which are services and where their logs and
//! disk are. Labels are written by whoever made the container, so a path in
//! one passes the same checks as a path in the rules (absolute, normalised,
//! never a system directory, never a database's data), or the container is
//! left unwatched with a reason.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::model::ContainerName;
use crate::rules::{Rules, Target};
use crate::safety;
use crate::stateless::{Dependency, LabelVerdict, quote, read_labels, resolve_dependencies};

/// The label naming a labelled service's log directories
/// (`opsguard.logs=/path[,/path]`), the only places `clean_logs` may touch.
pub const LOGS_LABEL: &str = "opsguard.logs";
/// The label naming a path on the disk whose usage is watched
/// (`opsguard.disk=/path`).
pub const DISK_LABEL: &str = "opsguard.disk";
/// Most log directories one label may name.
pub const MAX_LOG_PATHS: usize = 8;
/// Longest path a label may give.
pub const MAX_PATH_LEN: usize = 255;
/// Most services found by label: each costs an inspect per sweep, and a
/// host with more is better described in the rules.
pub const MAX_LABELLED: usize = 256;

/// What a watched service is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A PostgreSQL server: a crash is classified from its logs, a restart
    /// needs a human's approval.
    Database,
    /// A server whose log disk is watched and cleaned.
    Web,
}

impl Role {
    /// The role's label value and rules section.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Database => "database",
            Role::Web => "web",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One watched service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    /// What it is.
    pub role: Role,
    /// Its container, logs and disk.
    pub target: Target,
    /// Whether the rules name it (rather than its labels).
    pub from_rules: bool,
    /// What its labels say it needs (`opsguard.depends_on`, Compose's
    /// `depends_on`), each with the containers on the host that are it
    /// (none: not on this host, so it holds nothing).
    pub depends_on: Vec<(Dependency, Vec<ContainerName>)>,
}

/// Why a container that asks to be watched is not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The container.
    pub container: ContainerName,
    /// Why (inert text: label values are quoted, escaped and cut short).
    pub why: String,
}

/// The watched web servers and databases.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Roster {
    /// The rules' two first, then the labelled ones by name.
    services: Vec<Service>,
}

impl Roster {
    /// The rules' `[web]` and `[database]` alone.
    pub fn of_rules(rules: &Rules) -> Roster {
        Roster {
            services: vec![
                Service { role: Role::Web, target: rules.web.clone(), from_rules: true, depends_on: Vec::new() },
                Service {
                    role: Role::Database,
                    target: rules.database.clone(),
                    from_rules: true,
                    depends_on: Vec::new(),
                },
            ],
        }
    }

    /// The rules' services and those `containers` (name and labels) ask
    /// for under the label contract, with a reason for each that asks and
    /// is refused. A container the rules name keeps the rules' paths,
    /// whatever its labels say.
    pub fn build<'a>(
        rules: &Rules,
        containers: impl IntoIterator<Item = (&'a ContainerName, &'a BTreeMap<String, String>)>,
    ) -> (Roster, Vec<Refusal>) {
        let containers: Vec<_> = containers.into_iter().collect();
        let mut roster = Roster::of_rules(rules);
        let mut labelled = BTreeMap::new();
        let mut refused = Vec::new();
        for &(name, labels) in &containers {
            if let Some(s) = roster.services.iter_mut().find(|s| s.target.container == *name) {
                s.depends_on = resolve_dependencies(name, labels, &containers);
                continue;
            }
            let LabelVerdict::Service(role) = read_labels(labels, &rules.scope_label, &rules.stateless) else {
                continue;
            };
            if labelled.len() >= MAX_LABELLED {
                refused.push(Refusal {
                    container: name.clone(),
                    why: format!("more than {MAX_LABELLED} services by label: the rest are not watched"),
                });
                continue;
            }
            match labelled_target(rules, name, labels, role) {
                Ok(target) => {
                    let depends_on = resolve_dependencies(name, labels, &containers);
                    labelled.insert(name.clone(), Service { role, target, from_rules: false, depends_on });
                }
                Err(why) => refused.push(Refusal { container: name.clone(), why }),
            }
        }
        roster.services.extend(labelled.into_values());
        (roster, refused)
    }

    /// Keeps only the services `keep` accepts.
    pub fn retain(&mut self, keep: impl FnMut(&Service) -> bool) {
        self.services.retain(keep);
    }

    /// Every service, the rules' first.
    pub fn services(&self) -> &[Service] {
        &self.services
    }

    /// The targets of one role.
    pub fn of_role(&self, role: Role) -> impl Iterator<Item = &Target> {
        self.services.iter().filter(move |s| s.role == role).map(|s| &s.target)
    }

    /// The service whose container is `name`.
    pub fn get(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.target.container.as_str() == name)
    }

    /// The target of `name` if it is a service of `role`.
    pub fn target_of(&self, name: &str, role: Role) -> Option<&Target> {
        self.get(name).filter(|s| s.role == role).map(|s| &s.target)
    }

    /// The containers of every service: never zombies, never pruned.
    pub fn names(&self) -> Vec<ContainerName> {
        self.services.iter().map(|s| s.target.container.clone()).collect()
    }
}

/// A labelled service's target: its `opsguard.logs` and `opsguard.disk`,
/// or where they are missing the rules' own section of the same role (a
/// database without labels is laid out like the rules' database). Every
/// path passes the rules' checks.
pub fn labelled_target(
    rules: &Rules,
    name: &ContainerName,
    labels: &BTreeMap<String, String>,
    role: Role,
) -> Result<Target, String> {
    let defaults = match role {
        Role::Web => &rules.web,
        Role::Database => &rules.database,
    };
    let log_paths = match labels.get(LOGS_LABEL) {
        None => defaults.log_paths.clone(),
        Some(value) => {
            let paths: Vec<String> = value.split(',').map(str::trim).map(str::to_string).collect();
            if paths.len() > MAX_LOG_PATHS {
                return Err(format!("{LOGS_LABEL} names more than {MAX_LOG_PATHS} paths"));
            }
            for p in &paths {
                check_path(LOGS_LABEL, p)?;
                safety::check_log_path(p).map_err(|why| format!("{LOGS_LABEL}: {}: {why}", quote(p)))?;
            }
            paths
        }
    };
    let disk_path = match labels.get(DISK_LABEL) {
        Some(p) => {
            check_path(DISK_LABEL, p)?;
            if p.split('/').any(|c| c == "..") {
                return Err(format!("{DISK_LABEL}: {} must not climb out with `..`", quote(p)));
            }
            p.clone()
        }
        // A web server's disk is the one its logs are on.
        None if role == Role::Web && labels.contains_key(LOGS_LABEL) => log_paths[0].clone(),
        None => defaults.disk_path.clone(),
    };
    // A database's disk path is its data directory: a log path holding it
    // could destroy data when cleaned.
    let data: &[&str] = if role == Role::Database { &[disk_path.as_str()] } else { &[] };
    if let Some((p, d)) = safety::log_path_holding_data(&log_paths, data) {
        return Err(format!("{LOGS_LABEL}: {} holds the data directory {}", quote(p), quote(&d)));
    }
    Ok(Target { container: name.clone(), log_paths, disk_path })
}

/// A path a label gives: absolute, printable, not too long.
fn check_path(label: &str, p: &str) -> Result<(), String> {
    if p.len() > MAX_PATH_LEN {
        return Err(format!("{label}: a path longer than {MAX_PATH_LEN} bytes"));
    }
    if !p.starts_with('/') {
        return Err(format!("{label}: {} must be an absolute path", quote(p)));
    }
    if p.chars().any(char::is_control) {
        return Err(format!("{label}: {} holds a control character", quote(p)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn build(containers: &[(&str, &[(&str, &str)])]) -> (Roster, Vec<Refusal>) {
        let rules = Rules::default_rules();
        let owned: Vec<(ContainerName, BTreeMap<String, String>)> =
            containers.iter().map(|(n, l)| (ContainerName::from(*n), labels(l))).collect();
        Roster::build(&rules, owned.iter().map(|(n, l)| (n, l)))
    }

    const IN: [(&str, &str); 2] = [("opsguard.lab", "true"), ("opsguard.enable", "true")];

    fn with(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
        IN.iter().chain(extra).copied().collect()
    }

    #[test]
    fn the_rules_services_come_first_and_labelled_ones_join_them() {
        let db = with(&[("opsguard.role", "database")]);
        let web = with(&[("opsguard.role", "web"), ("opsguard.logs", "/srv/logs,/var/log/app")]);
        let (roster, refused) = build(&[("shop-db", &db), ("shop-web", &web), ("db-prod", &web)]);
        assert!(refused.is_empty(), "{refused:?}");
        let names: Vec<&str> = roster.services().iter().map(|s| s.target.container.as_str()).collect();
        assert_eq!(names, ["web-prod", "db-prod", "shop-db", "shop-web"]);
        let rules = Rules::default_rules();
        // The rules' database keeps the rules' paths whatever its labels say.
        assert_eq!(roster.target_of("db-prod", Role::Database), Some(&rules.database));
        let shop_db = roster.target_of("shop-db", Role::Database).unwrap();
        assert_eq!((&shop_db.log_paths, &shop_db.disk_path), (&rules.database.log_paths, &rules.database.disk_path));
        let shop_web = roster.target_of("shop-web", Role::Web).unwrap();
        assert_eq!(shop_web.log_paths, ["/srv/logs", "/var/log/app"]);
        assert_eq!(shop_web.disk_path, "/srv/logs", "a web server's disk is its first log directory's");
        assert_eq!(roster.target_of("shop-web", Role::Database), None);
        assert_eq!(roster.of_role(Role::Database).count(), 2);
        assert_eq!(roster.names().len(), 4);
    }

    #[test]
    fn containers_that_do_not_opt_in_are_not_services() {
        let out_of_scope = [("opsguard.enable", "true"), ("opsguard.role", "database")];
        let not_enabled = [("opsguard.lab", "true"), ("opsguard.role", "database")];
        let stateless = with(&[("opsguard.role", "stateless")]);
        let (roster, refused) = build(&[("a", &out_of_scope), ("b", &not_enabled), ("c", &stateless)]);
        assert_eq!(roster, Roster::of_rules(&Rules::default_rules()));
        assert!(refused.is_empty());
    }

    #[test]
    fn hostile_paths_are_refused_with_a_reason_and_watch_nothing() {
        let long = format!("/{}", "a".repeat(300));
        let many = ["/srv/l"; MAX_LOG_PATHS + 1].join(",");
        let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
            (vec![("opsguard.role", "web"), ("opsguard.logs", "/")], "too wide"),
            (vec![("opsguard.role", "web"), ("opsguard.logs", "/etc")], "too wide"),
            (vec![("opsguard.role", "web"), ("opsguard.logs", "relative/logs")], "absolute"),
            (vec![("opsguard.role", "web"), ("opsguard.logs", "/srv/../etc")], "normalised"),
            (vec![("opsguard.role", "web"), ("opsguard.logs", "/srv/logs,")], "absolute"),
            (vec![("opsguard.role", "web"), ("opsguard.logs", "/srv/\u{1b}[2J")], "control"),
            (vec![("opsguard.role", "web"), ("opsguard.logs", &long)], "longer"),
            (vec![("opsguard.role", "web"), ("opsguard.logs", &many)], "more than"),
            (vec![("opsguard.role", "database"), ("opsguard.logs", "/var/lib/postgresql/data")], "data directory"),
            (vec![("opsguard.role", "database"), ("opsguard.logs", "/data"), ("opsguard.disk", "/data/pg")], "data"),
            (vec![("opsguard.role", "database"), ("opsguard.disk", "data")], "absolute"),
            (vec![("opsguard.role", "database"), ("opsguard.disk", "/srv/../../x")], "climb"),
        ];
        for (extra, reason) in cases {
            let l: Vec<(&str, &str)> = IN.iter().copied().chain(extra.iter().copied()).collect();
            let (roster, refused) = build(&[("svc", &l)]);
            assert_eq!(roster.get("svc"), None, "{extra:?} was watched");
            assert_eq!(refused.len(), 1, "{extra:?}");
            assert!(refused[0].why.contains(reason), "{extra:?}: {}", refused[0].why);
            assert!(!refused[0].why.chars().any(char::is_control), "{:?}", refused[0].why);
            assert!(refused[0].why.len() < 200, "{}", refused[0].why);
        }
    }

    #[test]
    fn dependencies_are_found_on_the_host_and_never_the_service_itself() {
        let db = with(&[("opsguard.role", "database"), ("opsguard.depends_on", "primary-db,replica,gone")]);
        let primary = with(&[("opsguard.role", "database")]);
        let web = [("opsguard.lab", "true"), ("opsguard.depends_on", "replica")];
        let (roster, _) = build(&[("replica", &db), ("primary-db", &primary), ("web-prod", &web)]);
        let deps = |name: &str| -> Vec<(String, Vec<String>)> {
            roster
                .get(name)
                .unwrap()
                .depends_on
                .iter()
                .map(|(d, found)| (d.to_string(), found.iter().map(|c| c.as_str().to_string()).collect()))
                .collect()
        };
        let replica = deps("replica");
        assert_eq!(replica.len(), 3, "{replica:?}");
        assert!(replica.iter().any(|(_, f)| f == &["primary-db"]), "{replica:?}");
        assert!(replica.iter().filter(|(_, f)| f.is_empty()).count() == 2, "itself and a missing one: {replica:?}");
        // The rules' own services read their labels too.
        assert_eq!(deps("web-prod").iter().map(|(_, f)| f.clone()).collect::<Vec<_>>(), [["replica"]]);
        assert!(deps("primary-db").is_empty());
    }

    #[test]
    fn labelled_services_are_bounded() {
        let db = with(&[("opsguard.role", "database")]);
        let names: Vec<String> = (0..MAX_LABELLED + 3).map(|i| format!("db-{i:04}")).collect();
        let containers: Vec<(&str, &[(&str, &str)])> = names.iter().map(|n| (n.as_str(), &db[..])).collect();
        let (roster, refused) = build(&containers);
        assert_eq!(roster.services().len(), 2 + MAX_LABELLED);
        assert_eq!(refused.len(), 3);
    }
}

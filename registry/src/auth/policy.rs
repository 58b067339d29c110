//! The one access decision, pure: (who, which project, what) → allow or why not;
//! and what each project role may manage through the admin API.

use serde::{Deserialize, Serialize};

use super::Action;

/// A project role, as Harbor has them; each includes everything below it.
/// Stored by `as_str` (`project-admin` is the newest; the others are unchanged).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Guest,
    Developer,
    Maintainer,
    #[serde(
        rename = "project-admin",
        alias = "projectadmin",
        alias = "project_admin"
    )]
    ProjectAdmin,
}

/// What a project's members may manage through the admin API, beyond pull, push and delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Manage {
    /// Project settings: visibility (public or private).
    Settings,
    /// Give, change or take away a membership whose role (before or after) is this one.
    Member(Role),
    /// Create, list and revoke the project's robots.
    Robots,
    /// Delete repositories and tags through the admin API.
    Repositories,
    /// Create, change and delete the project's webhooks, and read their deliveries.
    Webhooks,
}

impl Role {
    pub const ALL: [Role; 4] = [
        Role::Guest,
        Role::Developer,
        Role::Maintainer,
        Role::ProjectAdmin,
    ];

    pub fn allows(self, action: Action) -> bool {
        match action {
            Action::Pull => true,
            Action::Push => self >= Role::Developer,
            Action::Delete => self >= Role::Maintainer,
        }
    }

    /// Maintainers manage members up to their own role, robots and repositories;
    /// settings and project admins are for project admins.
    pub fn may(self, what: Manage) -> bool {
        match what {
            Manage::Settings | Manage::Webhooks => self >= Role::ProjectAdmin,
            Manage::Member(role) => self >= Role::Maintainer && role <= self,
            Manage::Robots | Manage::Repositories => self >= Role::Maintainer,
        }
    }

    /// The least role that may do `what` (for refusals that say what is missing).
    pub fn needed_for(what: Manage) -> Role {
        Role::ALL
            .into_iter()
            .find(|r| r.may(what))
            .unwrap_or(Role::ProjectAdmin)
    }

    /// The role's name in prose ("project admin").
    pub fn title(self) -> &'static str {
        match self {
            Role::ProjectAdmin => "project admin",
            r => r.as_str(),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Guest => "guest",
            Role::Developer => "developer",
            Role::Maintainer => "maintainer",
            Role::ProjectAdmin => "project-admin",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    /// The stored names, case-insensitively, plus Harbor's spelling (`projectAdmin`)
    /// and the obvious variants of `project-admin`.
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "guest" => Ok(Role::Guest),
            "developer" => Ok(Role::Developer),
            "maintainer" => Ok(Role::Maintainer),
            "project-admin" | "projectadmin" | "project_admin" | "project admin" => {
                Ok(Role::ProjectAdmin)
            }
            _ => Err(format!(
                "unknown role {s:?}; use guest, developer, maintainer or project-admin"
            )),
        }
    }
}

/// Who is asking, as far as the decision needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Who {
    Anonymous,
    Admin,
    /// An account, with its role in the project in question (None: not a member).
    Member(Option<Role>),
    /// A robot of `project` with these actions.
    Robot {
        project: String,
        push: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Ask for credentials (anonymous caller).
    Challenge,
    /// Known caller, visible project, action not allowed: 403.
    Deny,
    /// The caller may not know the project exists: 404 NAME_UNKNOWN.
    Hide,
    /// The project does not exist (and the caller may know that).
    NoProject,
}

/// `project`: the project's visibility, None when it does not exist.
pub fn decide(
    who: &Who,
    project_name: &str,
    project_public: Option<bool>,
    action: Action,
) -> Decision {
    match (who, project_public) {
        (Who::Admin, Some(_)) => Decision::Allow,
        (Who::Admin, None) => Decision::NoProject,
        (Who::Anonymous, Some(true)) if action == Action::Pull => Decision::Allow,
        (Who::Anonymous, _) => Decision::Challenge,
        (Who::Robot { project, push }, Some(_)) if project == project_name => match action {
            Action::Pull => Decision::Allow,
            Action::Push if *push => Decision::Allow,
            _ => Decision::Deny,
        },
        (Who::Robot { .. }, Some(true)) => {
            if action == Action::Pull {
                Decision::Allow
            } else {
                Decision::Deny
            }
        }
        (Who::Robot { .. }, _) => Decision::Hide,
        (Who::Member(Some(role)), Some(_)) => {
            if role.allows(action) {
                Decision::Allow
            } else {
                Decision::Deny
            }
        }
        (Who::Member(None), Some(true)) => {
            if action == Action::Pull {
                Decision::Allow
            } else {
                Decision::Deny
            }
        }
        (Who::Member(None), Some(false)) | (Who::Member(_), None) => Decision::Hide,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Action::*;
    use Decision::*;

    #[test]
    fn matrix() {
        let dev = Who::Member(Some(Role::Developer));
        let guest = Who::Member(Some(Role::Guest));
        let maint = Who::Member(Some(Role::Maintainer));
        let outsider = Who::Member(None);
        let robot_pull = Who::Robot {
            project: "p".into(),
            push: false,
        };
        let robot_push = Who::Robot {
            project: "p".into(),
            push: true,
        };
        let cases = [
            (&Who::Anonymous, Some(true), Pull, Allow),
            (&Who::Anonymous, Some(true), Push, Challenge),
            (&Who::Anonymous, Some(false), Pull, Challenge),
            (&Who::Admin, Some(false), Delete, Allow),
            (&Who::Admin, None, Push, NoProject),
            (&guest, Some(false), Pull, Allow),
            (&guest, Some(false), Push, Deny),
            (&dev, Some(false), Push, Allow),
            (&dev, Some(false), Delete, Deny),
            (&maint, Some(false), Delete, Allow),
            (&outsider, Some(false), Pull, Hide),
            (&outsider, Some(true), Pull, Allow),
            (&outsider, Some(true), Push, Deny),
            (&outsider, None, Push, Hide),
            (&robot_pull, Some(false), Pull, Allow),
            (&robot_pull, Some(false), Push, Deny),
            (&robot_push, Some(false), Push, Allow),
            (&robot_push, Some(false), Delete, Deny),
        ];
        for (who, public, action, want) in cases {
            assert_eq!(
                decide(who, "p", public, action),
                want,
                "{who:?} {public:?} {action:?}"
            );
        }
        let other_robot = Who::Robot {
            project: "q".into(),
            push: true,
        };
        assert_eq!(decide(&other_robot, "p", Some(false), Pull), Hide);
        assert_eq!(decide(&other_robot, "p", Some(true), Pull), Allow);
        assert_eq!(decide(&other_robot, "p", Some(true), Push), Deny);
        // A project admin pulls, pushes and deletes like a maintainer.
        let padmin = Who::Member(Some(Role::ProjectAdmin));
        for action in [Pull, Push, Delete] {
            assert_eq!(
                decide(&padmin, "p", Some(false), action),
                Allow,
                "{action:?}"
            );
        }
    }

    /// The roles table as the README states it: one row per role, one column per
    /// permission, in the README's order.
    #[test]
    fn roles_table() {
        #[rustfmt::skip]
        let table: [(Role, [bool; 9]); 4] = [
            // members: of guests and developers / of maintainers / of project admins
            //                      pull  push   delete members                robots repos  settings
            (Role::Guest,        [true, false, false, false, false, false, false, false, false]),
            (Role::Developer,    [true, true,  false, false, false, false, false, false, false]),
            (Role::Maintainer,   [true, true,  true,  true,  true,  false, true,  true,  false]),
            (Role::ProjectAdmin, [true, true,  true,  true,  true,  true,  true,  true,  true]),
        ];
        for (role, want) in table {
            let got = [
                role.allows(Pull),
                role.allows(Push),
                role.allows(Delete),
                role.may(Manage::Member(Role::Guest)) && role.may(Manage::Member(Role::Developer)),
                role.may(Manage::Member(Role::Maintainer)),
                role.may(Manage::Member(Role::ProjectAdmin)),
                role.may(Manage::Robots),
                role.may(Manage::Repositories),
                role.may(Manage::Settings),
            ];
            assert_eq!(got, want, "{role}");
        }
        assert_eq!(Role::needed_for(Manage::Settings), Role::ProjectAdmin);
        assert_eq!(
            Role::needed_for(Manage::Member(Role::ProjectAdmin)),
            Role::ProjectAdmin
        );
        assert_eq!(
            Role::needed_for(Manage::Member(Role::Developer)),
            Role::Maintainer
        );
        assert_eq!(Role::needed_for(Manage::Robots), Role::Maintainer);
    }

    #[test]
    fn role_names_round_trip_and_old_names_still_parse() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>(), Ok(r));
            let json = serde_json::to_string(&r).expect("json");
            assert_eq!(json, format!("\"{}\"", r.as_str()));
            assert_eq!(serde_json::from_str::<Role>(&json).expect("back"), r);
        }
        for s in [
            "projectAdmin",
            "project_admin",
            "ProjectAdmin",
            " project-admin ",
        ] {
            assert_eq!(s.parse::<Role>(), Ok(Role::ProjectAdmin), "{s}");
        }
        assert!(Role::Maintainer < Role::ProjectAdmin);
        let err = "owner".parse::<Role>().expect_err("unknown");
        assert!(err.contains("project-admin"), "{err}");
    }
}

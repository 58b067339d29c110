//! The one access decision, pure: (who, which project, what) → allow or why not.

use serde::{Deserialize, Serialize};

use super::Action;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Guest,
    Developer,
    Maintainer,
}

impl Role {
    pub fn allows(self, action: Action) -> bool {
        match action {
            Action::Pull => true,
            Action::Push => self >= Role::Developer,
            Action::Delete => self >= Role::Maintainer,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Guest => "guest",
            Role::Developer => "developer",
            Role::Maintainer => "maintainer",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "guest" => Ok(Role::Guest),
            "developer" => Ok(Role::Developer),
            "maintainer" => Ok(Role::Maintainer),
            _ => Err(format!(
                "unknown role {s:?}; use guest, developer or maintainer"
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
    }
}

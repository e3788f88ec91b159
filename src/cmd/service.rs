//! `k0x start` / `k0x stop`: the installed unit, through systemctl (or rc-service on OpenRC).

use k0x_host::service::{Action, run};

#[allow(clippy::print_stdout)]
pub fn run_action(action: Action) -> anyhow::Result<()> {
    let done = match action {
        Action::Start => "started",
        Action::Stop => "stopped",
    };
    for unit in run(action)? {
        println!("{done} {}", unit.role.service_name());
    }
    Ok(())
}

//! Welcome: on `user/new`, says the configured greeting in the configured channel. Bot users
//! (other plugins) are not greeted.

use decentd_plugin::{export_plugin, log, say_in, Action, Plugin, Value};

#[derive(Default)]
pub struct Welcome {
    channel: String,
    text: String,
}

impl Plugin for Welcome {
    fn init(&mut self, config: &Value) {
        self.channel = config["channel"].as_str().unwrap_or_default().to_owned();
        self.text = config["text"]
            .as_str()
            .unwrap_or("Welcome, {name}!")
            .to_owned();
        if self.channel.is_empty() {
            log("no channel configured: set [config] channel to a channel ID");
        }
    }

    fn event(&mut self, event: &str, data: &Value) -> Vec<Action> {
        let user = &data["user"];
        if event != "user/new" || self.channel.is_empty() || user["bot"] == true {
            return Vec::new();
        }
        let name = user["username"].as_str().unwrap_or("friend");
        vec![say_in(
            self.channel.clone(),
            self.text.replace("{name}", name),
        )]
    }
}

export_plugin!(Welcome);

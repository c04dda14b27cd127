"""A fake Slack: Web API and Socket Mode servers for the real slack_sdk, and a terminal view of threads."""

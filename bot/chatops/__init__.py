"""What Slack requests mean, below the flows: the `/imagepull` command grammar and the port the flows offer."""

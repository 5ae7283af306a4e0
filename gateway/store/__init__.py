"""Mail storage: one Maildir per mailbox (local delivery) and the outbound queue."""

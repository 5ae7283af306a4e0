"""IMAP server: sans-IO parser (parser), command logic (session), MIME views (mime), SEARCH
(search), sockets (server) and the service `mssgw serve` starts (service)."""

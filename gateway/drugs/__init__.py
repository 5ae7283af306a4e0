"""The drug reference: the public French drug database (BDPM) imported into SQLite.

`bdpm` reads the official files (pure: bytes in, rows and problems out), `store` keeps them in the
gateway's database and answers look-ups by CIS, CIP13 and name, `cli` is `mssgw drugs ...`.
"""

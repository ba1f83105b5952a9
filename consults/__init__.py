"""The clinical domain without I/O: institutions, people and roles, devices, service
relations and viewing rights, accounts policy; consults, opinions, referrals, reading
tasks and critical values, each lifecycle one transition table; the repository
Protocols the domain needs."""

-- The console keeps its data in its own database beside the agents' one.
CREATE DATABASE cap_console OWNER cap;

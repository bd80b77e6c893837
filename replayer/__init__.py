"""The auditors' terminal UI (issue 5). Reads recordings only through gateway.recording.reader."""

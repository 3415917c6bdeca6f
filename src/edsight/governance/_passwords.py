"""Password rules (OWASP ASVS V6): length, no username, not a common password."""

from __future__ import annotations

from edsight.errors import InvalidInput

MIN_LENGTH = 12
MAX_LENGTH = 256

TOO_SHORT = f"password rule: at least {MIN_LENGTH} characters"
TOO_LONG = f"password rule: at most {MAX_LENGTH} characters"
HAS_USERNAME = "password rule: must not contain the username"
TOO_COMMON = "password rule: too common (found in the list of breached passwords)"

# Passwords of 12+ characters that top public breach-frequency lists; a small built-in
# set (no download) that catches the guesses tried first.
COMMON_PASSWORDS = frozenset(
    {
        "123456789012",
        "1234567890123",
        "12345678901234",
        "123456789123",
        "111111111111",
        "000000000000",
        "123123123123",
        "qwertyuiopas",
        "qwertyuiop123",
        "qwerty123456",
        "1q2w3e4r5t6y",
        "1qaz2wsx3edc",
        "zaq12wsxcde3",
        "asdfghjkl123",
        "password1234",
        "password12345",
        "password123456",
        "passwordpassword",
        "password!123",
        "p@ssword1234",
        "p@ssw0rd1234",
        "iloveyou1234",
        "welcome12345",
        "welcome123456",
        "letmein12345",
        "changeme1234",
        "changeme123456",
        "administrator",
        "administrator1",
        "admin1234567",
        "abcdefghijkl",
        "abcd12345678",
        "abc123456789",
        "football1234",
        "baseball1234",
        "sunshine1234",
        "princess1234",
        "starwars1234",
        "trustno1trustno1",
        "superman1234",
        "teacher12345",
        "student12345",
        "school123456",
        "summer2024!!",
        "winter2024!!",
        "spring2025!!",
        "fall2025!!!!",
        "correcthorsebatterystaple",
        "monkey123456",
        "dragon123456",
    }
)


def check_password(username: str, password: str) -> None:
    """Raise :class:`InvalidInput` naming the first rule ``password`` breaks."""
    if len(password) < MIN_LENGTH:
        raise InvalidInput(TOO_SHORT)
    if len(password) > MAX_LENGTH:
        raise InvalidInput(TOO_LONG)
    if username and username.casefold() in password.casefold():
        raise InvalidInput(HAS_USERNAME)
    if password.casefold() in COMMON_PASSWORDS:
        raise InvalidInput(TOO_COMMON)

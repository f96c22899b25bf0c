"""Country names as CRMs and business-card apps write them → ISO 3166-1 alpha-2 codes.

HubSpot writes ``Japan``, Salesforce ``Japan`` or ``JP``, a Japanese export ``日本``; routing
wants one key per territory (``territories: {JP: aoki}``), so the importer turns a recognised
country into its code. The table covers the codes, the English short names (and common
variants) and the Japanese names of the countries B2B teams most often sell into; any other
value is kept as written (a ``territories:`` key can name it as written too).
"""

from __future__ import annotations

import unicodedata

# code: names (English first, then variants, then Japanese). Matched case- and width-insensitively.
_TABLE = """
AE United Arab Emirates|UAE|アラブ首長国連邦
AR Argentina|アルゼンチン
AT Austria|オーストリア
AU Australia|オーストラリア|豪州
BE Belgium|ベルギー
BR Brazil|Brasil|ブラジル
CA Canada|カナダ
CH Switzerland|スイス
CL Chile|チリ
CN China|People's Republic of China|PRC|中国|中華人民共和国
CO Colombia|コロンビア
CZ Czechia|Czech Republic|チェコ
DE Germany|Deutschland|ドイツ
DK Denmark|デンマーク
EG Egypt|エジプト
ES Spain|España|スペイン
FI Finland|フィンランド
FR France|フランス
GB United Kingdom|UK|Great Britain|Britain|England|Scotland|Wales|Northern Ireland|イギリス|英国
GR Greece|ギリシャ
HK Hong Kong|香港
HU Hungary|ハンガリー
ID Indonesia|インドネシア
IE Ireland|アイルランド
IL Israel|イスラエル
IN India|インド
IT Italy|Italia|イタリア
JP Japan|Nippon|Nihon|日本|日本国
KR South Korea|Korea|Republic of Korea|Korea, Republic of|韓国|大韓民国
MX Mexico|México|メキシコ
MY Malaysia|マレーシア
NL Netherlands|The Netherlands|Holland|オランダ
NO Norway|ノルウェー
NZ New Zealand|ニュージーランド
PE Peru|ペルー
PH Philippines|フィリピン
PL Poland|ポーランド
PT Portugal|ポルトガル
RO Romania|ルーマニア
SA Saudi Arabia|サウジアラビア
SE Sweden|スウェーデン
SG Singapore|シンガポール
TH Thailand|タイ
TR Turkey|Türkiye|トルコ
TW Taiwan|台湾
UA Ukraine|ウクライナ
US United States|United States of America|USA|U.S.|U.S.A.|America|アメリカ|アメリカ合衆国|米国
VN Vietnam|Viet Nam|ベトナム
ZA South Africa|南アフリカ
"""

_ALPHA3 = {"JPN": "JP", "USA": "US", "GBR": "GB", "DEU": "DE", "FRA": "FR", "CHN": "CN", "KOR": "KR",
           "TWN": "TW", "SGP": "SG", "AUS": "AU", "CAN": "CA", "IND": "IN", "HKG": "HK", "NLD": "NL"}


def _key(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold().strip().rstrip(".")


def _build() -> dict[str, str]:
    out: dict[str, str] = {}
    for line in _TABLE.strip().splitlines():
        code, _, names = line.partition(" ")
        out[_key(code)] = code
        for name in names.split("|"):
            out[_key(name)] = code
    for a3, code in _ALPHA3.items():
        out[_key(a3)] = code
    return out


_BY_NAME = _build()


def country_code(text: str) -> str | None:
    """The ISO 3166-1 alpha-2 code for a country name or code (``Japan``, ``日本``, ``jp``,
    ``JPN`` → ``JP``), or None when the table does not know it."""
    if not text.strip():
        return None
    return _BY_NAME.get(_key(text))

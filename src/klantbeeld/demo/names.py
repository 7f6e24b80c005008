"""Word lists for the synthetic population: names, places, devices.

Kept separate from the generator logic so the lists can grow without
touching the simulation. The lists are deliberately Dutch (the platform's
first users are Dutch retailers) and include names with diacritics and
"tussenvoegsels" (van, de, van der) because those are exactly what breaks
naive matching on real CRM exports.
"""

FEMALE_FIRST = [
    "Emma", "Julia", "Sophie", "Anna", "Tess", "Zoë", "Sara", "Eva", "Lotte",
    "Fleur", "Lisa", "Noor", "Anouk", "Sanne", "Iris", "Femke", "Maud",
    "Lieke", "Esther", "Marieke", "Ingrid", "Wilma", "Petra", "Monique",
    "Linda", "Ellen", "Karin", "Annemarie", "Judith", "Hanneke", "Mirjam",
    "Yvonne", "Saskia", "Nicole", "Chantal", "Fatima", "Amira", "Yasmin",
    "Elif", "Priya", "Mei", "Jasmijn", "Roos", "Floor", "Lara", "Nina",
    "Ilse", "Marloes", "Kim", "Renée",
]

MALE_FIRST = [
    "Daan", "Sem", "Lucas", "Levi", "Finn", "Milan", "Jesse", "Thijs", "Bram",
    "Lars", "Ruben", "Tim", "Niels", "Jeroen", "Martijn", "Sander", "Bas",
    "Joost", "Erik", "Peter", "Jan", "Kees", "Henk", "Willem", "Gerrit",
    "Johan", "Marco", "Dennis", "Rob", "Mark", "Arjen", "Wouter", "Pieter",
    "Stefan", "Mohamed", "Youssef", "Mehmet", "Emre", "Rajesh", "Minh",
    "Koen", "Stijn", "Gijs", "Hugo", "Max", "Jens", "Olaf", "Teun", "Rik",
    "André",
]

LAST_NAMES = [
    "de Jong", "Jansen", "de Vries", "van den Berg", "van Dijk", "Bakker",
    "Janssen", "Visser", "Smit", "Meijer", "de Boer", "Mulder", "de Groot",
    "Bos", "Vos", "Peters", "Hendriks", "van Leeuwen", "Dekker", "Brouwer",
    "de Wit", "Dijkstra", "Smits", "de Graaf", "van der Meer", "van der Linden",
    "Kok", "Jacobs", "de Haan", "Vermeulen", "van den Heuvel", "van der Veen",
    "van den Broek", "de Bruijn", "de Bruin", "van der Heijden", "Schouten",
    "van Beek", "Willems", "van Vliet", "van de Ven", "Hoekstra", "Maas",
    "Verhoeven", "Koster", "van Dam", "van der Wal", "Prins", "Blom",
    "Huisman", "Peeters", "de Lange", "Kuipers", "van Wijk", "Postma",
    "Kuiper", "Veenstra", "Kramer", "van den Brink", "Scholten", "Wijnands",
    "Yılmaz", "Kaya", "El Amrani", "Öztürk", "Bouzid", "Nguyen", "Ramdin",
    "Sewnath", "Martens", "Groen", "Timmermans", "Koning", "Sanders",
    "Molenaar", "Evers", "van Rijn", "Bosman", "Hermans", "Bijl",
]

# Common spelling variants a contact re-registering might use.
LAST_NAME_VARIANTS = {
    "Jansen": "Janssen", "Janssen": "Jansen", "de Bruijn": "de Bruyn",
    "de Bruin": "de Bruijn", "Smit": "Smits", "Smits": "Smit",
    "Meijer": "Meyer", "Kuiper": "Kuipers", "Kuipers": "Kuiper",
    "Peters": "Pieters", "Peeters": "Peters", "de Haan": "De Haan",
    "van Dijk": "van Dyk", "Hendriks": "Hendrikx", "Yılmaz": "Yilmaz",
    "Öztürk": "Ozturk", "El Amrani": "Amrani", "van der Meer": "Van der Meer",
}
FIRST_NAME_VARIANTS = {
    "Sophie": "Sofie", "Zoë": "Zoe", "Renée": "Renee", "André": "Andre",
    "Sara": "Sarah", "Anouk": "Anoek", "Jeroen": "Jerome", "Pieter": "Piet",
    "Willem": "Wim", "Johan": "Johannes", "Gerrit": "Gert", "Thijs": "Tijs",
    "Kim": "Kimberley", "Lisa": "Liza", "Mohamed": "Mohammed",
    "Youssef": "Yusuf", "Jasmijn": "Jasmin", "Marieke": "Maria",
}

# city -> (first postcode number, last postcode number)
CITIES = {
    "Amsterdam": (1011, 1109), "Rotterdam": (3011, 3089),
    "Den Haag": (2491, 2597), "Utrecht": (3511, 3585),
    "Eindhoven": (5611, 5658), "Groningen": (9711, 9747),
    "Tilburg": (5011, 5049), "Almere": (1311, 1364), "Breda": (4811, 4841),
    "Nijmegen": (6511, 6546), "Apeldoorn": (7311, 7339),
    "Haarlem": (2011, 2037), "Arnhem": (6811, 6846), "Zwolle": (8011, 8043),
    "Maastricht": (6211, 6229), "Leiden": (2311, 2334),
}
# rough relative populations, so Amsterdam gets more customers than Zwolle
CITY_WEIGHTS = [9, 6.5, 5.5, 3.6, 2.4, 2.3, 2.2, 2.2, 1.9, 1.8, 1.7, 1.6,
                1.6, 1.3, 1.2, 1.3]

# Dutch postcodes never use these letters in the letter pair.
POSTCODE_LETTERS = "ABCEGHJKLMNPRSTVWXZ"

STREETS = [
    "Kerkstraat", "Dorpsstraat", "Molenweg", "Stationsweg", "Schoolstraat",
    "Julianastraat", "Beatrixlaan", "Wilhelminastraat", "Nieuwstraat",
    "Oranjestraat", "Parallelweg", "Lindelaan", "Eikenlaan", "Kastanjelaan",
    "Prins Hendrikstraat", "Hoofdstraat", "Sportlaan", "Van Goghstraat",
    "Rembrandtlaan", "Vondelstraat", "Marktplein", "Burgemeester Smitlaan",
    "Koningin Emmalaan", "Tulpstraat", "Rozenstraat", "Zonnebloemweg",
    "Havenkade", "Singel", "Achterweg", "Middelweg", "Populierenlaan",
    "Berkenlaan", "Spoorstraat", "Beukenlaan", "Klaverweg", "Wethouder Janssenstraat",
    "Laan van Meerdervoort", "Bloemgracht", "Amstelveenseweg", "Dr. Schaepmanstraat",
]

EMAIL_DOMAINS = ["gmail.com", "hotmail.com", "outlook.com", "live.nl",
                 "ziggo.nl", "kpnmail.nl", "icloud.com", "xs4all.nl",
                 "planet.nl", "yahoo.com", "home.nl", "hotmail.nl"]
EMAIL_DOMAIN_WEIGHTS = [30, 18, 10, 7, 7, 6, 6, 3, 3, 3, 3, 4]
# typos seen in hand-typed addresses: domain -> misspelling
DOMAIN_TYPOS = {
    "gmail.com": ["gmial.com", "gmail.con", "gmal.com", "gmail.nl"],
    "hotmail.com": ["hotmial.com", "hotmail.con", "hotmai.com"],
    "outlook.com": ["outlok.com", "outloo.com"],
    "live.nl": ["live.com", "lve.nl"],
    "ziggo.nl": ["zigo.nl", "ziggo.com"],
}

DESKTOP_UAS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/129.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:131.0) Gecko/20100101 Firefox/131.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/128.0.0.0 Safari/537.36 Edg/128.0.0.0",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/127.0.0.0 Safari/537.36",
]
MOBILE_UAS = [
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; SM-S911B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/129.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 13; Pixel 7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/128.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.0 Mobile/15E148 Safari/604.1",
]
# (os name, manufacturer, model, os versions)
APP_DEVICES = [
    ("iOS", "Apple", "iPhone15,2", ["17.5", "17.6", "18.0"]),
    ("iOS", "Apple", "iPhone14,5", ["16.7", "17.6"]),
    ("iOS", "Apple", "iPad13,18", ["17.6", "18.0"]),
    ("Android", "samsung", "SM-S911B", ["13", "14"]),
    ("Android", "samsung", "SM-A546B", ["13", "14"]),
    ("Android", "Google", "Pixel 7", ["14", "15"]),
    ("Android", "OnePlus", "CPH2449", ["14"]),
]
